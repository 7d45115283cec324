//! Epoch agreement in the simulator: honest runs sign every epoch; sweeps of seeds
//! with equivocating, withholding, garbage-sending and availability-lying members
//! (fewer than a third) show zero safety violations; and the checkers do fire when
//! the colluders reach the threshold.

use plexus_epochs::availability::PPM_FULL;
use plexus_epochs::work::WORK_LAG;
use plexus_sim::epochs::{Behaviour, EpochRun, run};

fn with(byzantine: Vec<(usize, Behaviour)>) -> EpochRun {
    EpochRun {
        byzantine,
        ..EpochRun::default()
    }
}

#[test]
fn an_honest_committee_signs_every_epoch_and_measures_the_killed_worker() {
    let params = EpochRun::default();
    let r = run(&params, 1);
    assert!(r.passed(), "{:?}", r.violations);
    // The run lasts until epoch `epochs + 1` ends, so epochs 0..=epochs close.
    let want: Vec<u64> = (0..=params.epochs).collect();
    let got: Vec<u64> = r.signed.keys().copied().collect();
    assert_eq!(got, want, "failed: {:?}", r.failed);
    for s in r.signed.values() {
        assert_eq!(s.verify(Some(&r.group_key)), Ok(()));
        assert!(s.signers.len() >= r.threshold);
        // Worker 0 is down for the middle third of every epoch.
        let killed = s
            .checkpoint
            .row(&r.workers[0])
            .expect("the killed worker is a member");
        assert!(
            (600_000..=700_000).contains(&killed.availability_ppm),
            "epoch {}: {}",
            s.checkpoint.epoch,
            killed.availability_ppm
        );
        assert!(
            killed.reward_units > 0 && killed.reward_units < s.checkpoint.reward_policy.base_units
        );
        let up = s.checkpoint.row(&r.workers[1]).unwrap();
        assert!(up.availability_ppm > 950_000 && up.availability_ppm <= PPM_FULL);
        // Work: epoch e credits the work of e − 2 (none before); worker 0 is
        // proven wrong in odd epochs and is credited nothing for them.
        let e = s.checkpoint.epoch;
        if e < WORK_LAG {
            assert_eq!(s.checkpoint.work_root, [0; 32]);
            assert!(s.checkpoint.members.iter().all(|m| m.work_units == 0));
        } else {
            assert_ne!(s.checkpoint.work_root, [0; 32], "epoch {e}");
            assert!(up.work_units >= 100, "epoch {e}: {}", up.work_units);
            assert!(
                up.reward_units >= up.work_units * s.checkpoint.reward_policy.units_per_work,
                "work is paid"
            );
            if (e - WORK_LAG) % 2 == 1 {
                assert_eq!(killed.work_units, 0, "epoch {e}: proven wrong, yet paid");
            } else {
                assert!(killed.work_units > 0, "epoch {e}");
            }
        }
    }
    // Each checkpoint links the one before.
    let hashes: Vec<_> = r.signed.values().map(|s| s.hash().unwrap()).collect();
    for (i, s) in r.signed.values().enumerate().skip(1) {
        assert_eq!(s.checkpoint.previous, hashes[i - 1]);
    }
}

#[test]
fn the_same_seed_replays_the_same_run() {
    let params = with(vec![(1, Behaviour::Equivocate)]);
    let a = run(&params, 9);
    let b = run(&params, 9);
    assert_eq!(a.delivered, b.delivered);
    assert_eq!(
        a.signed
            .values()
            .map(|s| s.hash().unwrap())
            .collect::<Vec<_>>(),
        b.signed
            .values()
            .map(|s| s.hash().unwrap())
            .collect::<Vec<_>>()
    );
}

#[test]
fn byzantine_sweep_has_no_safety_violations() {
    let behaviours = [
        Behaviour::Equivocate,
        Behaviour::Withhold,
        Behaviour::Garbage,
        Behaviour::LieAvailability,
    ];
    for seed in 0..6 {
        for b in behaviours {
            // n = 7, f = 2: two colluders with the same lie.
            let params = EpochRun {
                drop_ppm: if seed % 2 == 0 { 0 } else { 20_000 },
                ..with(vec![(seed as usize % 7, b), ((seed as usize + 3) % 7, b)])
            };
            let r = run(&params, seed);
            assert!(r.passed(), "seed {seed} {b:?}: {:?}", r.violations);
            assert!(
                r.signed.len() >= 3,
                "seed {seed} {b:?}: only {:?} signed, failed {:?}",
                r.signed.keys().collect::<Vec<_>>(),
                r.failed
            );
        }
    }
}

#[test]
fn equivocation_is_proven_and_carried_as_evidence() {
    let r = run(&with(vec![(2, Behaviour::Equivocate)]), 4);
    assert!(r.passed(), "{:?}", r.violations);
    assert!(
        !r.equivocations.is_empty(),
        "the equivocation went unnoticed"
    );
    let carried: Vec<_> = r
        .signed
        .values()
        .flat_map(|s| s.checkpoint.evidence.iter().map(|e| (e.epoch, e.signer)))
        .collect();
    assert!(
        r.equivocations.iter().any(|e| carried.contains(e)),
        "no checkpoint carries {:?}",
        r.equivocations
    );
}

#[test]
fn garbage_partials_are_dropped_and_still_sign() {
    let r = run(&with(vec![(0, Behaviour::Garbage)]), 2);
    assert!(r.passed(), "{:?}", r.violations);
    assert!(r.bad_partials > 0, "no bad partial was seen");
    assert!(r.signed.len() as u64 >= EpochRun::default().epochs - 1);
}

#[test]
fn a_crashed_member_restarts_without_voting_twice() {
    let params = EpochRun {
        crash: Some((3, 10_500, 4_000)),
        ..EpochRun::default()
    };
    for seed in 0..3 {
        let r = run(&params, seed);
        assert!(r.passed(), "seed {seed}: {:?}", r.violations);
        assert!(r.signed.len() >= 5, "seed {seed}: {:?}", r.signed.keys());
    }
}

#[test]
fn the_checkers_fire_when_colluders_reach_the_threshold() {
    // n = 4, t = 3: three equivocators can sign their forged root. The forgery
    // checker must say so; otherwise the sweep above proves nothing.
    let params = EpochRun {
        members: 4,
        ..with(vec![
            (0, Behaviour::Equivocate),
            (1, Behaviour::Equivocate),
            (2, Behaviour::Equivocate),
        ])
    };
    let r = run(&params, 3);
    assert!(
        r.violations.iter().any(|v| v.starts_with("forgery")),
        "{:?}",
        r.violations
    );
    // Three of four observers lying about work outvote the honest one: the
    // work bound's checker must see it.
    let params = EpochRun {
        members: 4,
        ..with(vec![
            (0, Behaviour::LieAvailability),
            (1, Behaviour::LieAvailability),
            (2, Behaviour::LieAvailability),
        ])
    };
    let r = run(&params, 3);
    assert!(
        r.violations.iter().any(|v| v.starts_with("work-bound")),
        "{:?}",
        r.violations
    );
}
