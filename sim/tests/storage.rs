//! Storage in the simulator: the repair, put and key-value cores with crashes,
//! partitions, message loss and a faulty disk (lost, torn and corrupted writes,
//! rot at rest). While at most r - 1 nodes are faulty, no acknowledged chunk is
//! lost, every one is back to exactly r intact copies once the faults stop (the
//! copies the repair made while a node was down are handed off when it returns),
//! corruption is always caught, and the key-value replicas converge to the last
//! write per key, deletes included. Each run replays exactly from its seed.

use plexus_sim::storage::{StorageRun, run};

#[test]
fn no_acknowledged_chunk_is_lost_and_replicas_converge_over_30_seeds() {
    let params = StorageRun::default();
    let mut faults = [0u64; 4];
    let (mut crashes, mut repaired, mut detected, mut acked, mut handed_off) = (0, 0, 0, 0, 0);
    for seed in 1..=30 {
        let r = run(&params, seed);
        assert!(r.passed(), "seed {seed}: {:?}", r.violations);
        for (a, b) in faults.iter_mut().zip(r.disk_faults) {
            *a += b;
        }
        crashes += r.crashes;
        repaired += r.repaired;
        detected += r.corrupt_detected;
        acked += r.acked;
        handed_off += r.handed_off;
        assert!(r.kv_writes > 0 && r.reads > 0, "seed {seed}: no traffic");
    }
    eprintln!(
        "30 seeds: {acked} chunks acknowledged, disk faults (lost, torn, corrupt, rot) \
         {faults:?}, {crashes} crashes, {detected} bad copies caught, {repaired} copies repaired, \
         {handed_off} stray copies handed off"
    );
    // The sweep really exercised what it claims to survive.
    assert!(
        faults.iter().all(|f| *f > 0),
        "disk faults of each kind: {faults:?}"
    );
    assert!(crashes > 0 && repaired > 0 && detected > 0 && acked > 100);
    // Nodes came back to find their chunks re-created elsewhere, and the strays
    // went (the `over-replicated` checker holds every run to it).
    assert!(handed_off > 0, "no stray copy was ever handed off");
}

#[test]
fn a_run_replays_exactly_from_its_seed() {
    let params = StorageRun {
        chunks: 20,
        duration_ms: 20_000,
        settle_ms: 40_000,
        ..StorageRun::default()
    };
    let a = run(&params, 7);
    let b = run(&params, 7);
    let c = run(&params, 8);
    assert_eq!(a.trace, b.trace);
    assert_eq!(
        (a.acked, a.repaired, a.delivered),
        (b.acked, b.repaired, b.delivered)
    );
    assert_ne!(a.trace, c.trace);
}

#[test]
fn the_checkers_catch_losses_past_the_fault_budget() {
    // Every node faulty, one copy per chunk, disks rotting fast: chunks are lost,
    // and the checkers say so.
    let params = StorageRun {
        replicas: 1,
        faulty: 6,
        unclamped: true,
        disk_fault_ppm: 400_000,
        ..StorageRun::default()
    };
    let lost = (1..=5).any(|seed| {
        run(&params, seed)
            .violations
            .iter()
            .any(|v| v.starts_with("acked-lost"))
    });
    assert!(
        lost,
        "a run beyond the fault budget lost nothing: the checker proves nothing"
    );
}
