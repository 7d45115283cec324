//! Serving on a GPU through wgpu (`--features wgpu`). CI runs this on Mesa's
//! lavapipe, a Vulkan device on the CPU, so it needs no GPU; on a machine with a
//! GPU it runs there. It checks what `docs/design/poai.md` says of GPU work: the
//! outputs are close to flex's but not bit-identical in general, the same engine
//! repeats its own bytes, and receipts name the adapter, so only nodes with the
//! same one are drawn to verify.
#![cfg(feature = "wgpu")]

use plexus_ml::digits::{CLASSES, Digits, Image};
use plexus_ml::engine::{BackendKind, Engine, VERSION_MAX, WGPU_SOFTWARE};
use plexus_ml::executor::{self, encode_output};
use plexus_ml::model::{Mlp, Weights};

fn run_on(engine: &Engine, weights: &Weights, images: &[Image]) -> Vec<[f32; CLASSES]> {
    let model = Mlp::from_weights(weights, engine.device()).unwrap();
    executor::run(&model, images, engine.device())
}

#[test]
fn the_wgpu_engine_serves_close_to_flex_repeats_itself_and_names_its_adapter() {
    let gpu = Engine::open(BackendKind::Wgpu)
        .expect("a wgpu adapter (CI installs Mesa's lavapipe: mesa-vulkan-drivers)");
    assert_eq!(gpu.name(), "wgpu");
    assert!(
        gpu.version().starts_with(WGPU_SOFTWARE),
        "{}",
        gpu.version()
    );
    assert!(gpu.version().len() <= VERSION_MAX);
    // Opening again names the same adapter the same way.
    let again = Engine::open(BackendKind::Wgpu).unwrap();
    assert_eq!(again.version(), gpu.version());

    let weights = Weights::init(3);
    let data = Digits::bundled().unwrap();
    let images: Vec<Image> = data.images[..96].to_vec();
    let on_gpu = run_on(&gpu, &weights, &images);
    let on_cpu = run_on(&Engine::flex(), &weights, &images);
    assert_eq!(on_gpu.len(), images.len());
    let mut worst = 0f32;
    for (g, c) in on_gpu.iter().zip(&on_cpu) {
        for (a, b) in g.iter().zip(c) {
            assert!(a.is_finite());
            worst = worst.max((a - b).abs() / b.abs().max(1.0));
        }
        // The class agrees wherever flex's top two logits are not a near tie.
        let mut sorted = *c;
        sorted.sort_by(|x, y| y.total_cmp(x));
        if sorted[0] - sorted[1] > 1e-3 {
            assert_eq!(
                plexus_ml::model::class(g),
                plexus_ml::model::class(c),
                "{g:?} vs {c:?}"
            );
        }
    }
    assert!(worst <= 1e-4, "wgpu differs from flex by {worst}");
    // The same engine, the same batch plan: the same bytes (what a verifier with
    // the same adapter relies on).
    let twice = run_on(&gpu, &weights, &images);
    let bytes = |rows: &[[f32; CLASSES]]| rows.iter().map(encode_output).collect::<Vec<_>>();
    assert_eq!(bytes(&twice), bytes(&on_gpu));
    println!(
        "wgpu on {}: max relative difference from flex {worst:e}",
        gpu.version()
    );
}
