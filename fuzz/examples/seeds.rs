//! Writes the seed corpora: `cargo run --example seeds [DIR]` (default `corpus`, run
//! from `fuzz/`). Each seed is named by its index; existing files are kept, so the
//! fuzzer's own finds stay.

use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let root = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "corpus".into()));
    for (target, inputs) in plexus_fuzz::seeds() {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir)?;
        for (i, input) in inputs.iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{i}")), input)?;
        }
        println!("{target}: {} seeds", inputs.len());
    }
    Ok(())
}
