//! The `plexus` command line.

fn main() -> std::process::ExitCode {
    plexus::cli::main()
}
