//! Record patches: a commit sends each replica what changed since the record it
//! already holds, not the whole state.
//!
//! An actor that keeps a large state and changes a little of it per batch would
//! otherwise put its whole snapshot on the wire to every replica at every commit
//! (a 1 MiB state, committed every 16 ms at the default snapshot bandwidth, is
//! 64 MiB/s per replica to encrypt, send, decrypt and decode). A [`Patch`] is a
//! copy/insert delta against the *base*, the record the activation last wrote;
//! [`RecordPatch`] names the base by its order and closes with the blake3 digest
//! of the new body, so a replica rebuilds exactly the record the activation
//! encoded, or nothing:
//!
//! * a replica that does not hold the base (it missed the last write, it is new to
//!   the set, its copy was lost) or whose rebuilt body does not match the digest
//!   (its copy is corrupt) answers [`crate::wire::ReplicaReply::WantWhole`] and
//!   the activation sends it the whole record, once per commit;
//! * a patch whose copies reach outside the base, or whose result would exceed
//!   the caller's bound (the state bound), is rejected by [`Patch::rebuild`] with a typed error before
//!   anything is allocated for it.
//!
//! [`diff`] finds the common prefix and suffix, then compares the middle in
//! [`BLOCK_BYTES`] blocks, aligned at the front or at the back (whichever carries
//! less), and sends of each changed block the span between its first and last
//! changed bytes: a state edited in place, or grown or shrunk at one point, sends
//! about what changed. Edits that shift bytes at several points
//! send more; [`diff`]'s caller sends the whole record when a patch would carry
//! more than half of it.

use serde::{Deserialize, Serialize};

use crate::types::{Ballot, Record, ReplicaSet};

/// The unit the middle of two bodies is compared in.
pub const BLOCK_BYTES: usize = 4096;

/// One step of rebuilding a body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Edit {
    /// `len` bytes of the base, from offset `at`.
    Copy {
        /// Offset in the base.
        at: u64,
        /// How many bytes.
        len: u64,
    },
    /// These bytes.
    Insert(#[serde(with = "serde_bytes")] Vec<u8>),
}

/// A body as edits of a base body: the new body is the edits' output, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Patch {
    /// The edits.
    pub edits: Vec<Edit>,
}

/// Why a patch does not rebuild a body. Whoever sent the patch is at fault (or
/// the base the replica holds is not the one the patch was made against).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PatchError {
    /// A copy reaches past the end of the base.
    #[error("a copy of {len} bytes at {at} reaches past the base's {base} bytes")]
    OutOfRange {
        /// The copy's offset.
        at: u64,
        /// Its length.
        len: u64,
        /// The base's length.
        base: usize,
    },
    /// The rebuilt body would be longer than the bound.
    #[error("the rebuilt body would be over {max} bytes")]
    TooLong {
        /// The bound.
        max: usize,
    },
    /// The rebuilt body's digest is not the one the patch names.
    #[error("the rebuilt body does not match the patch's digest")]
    Digest,
    /// The record given is not the one the patch was made against.
    #[error("the patch does not follow the record given")]
    Base,
}

impl Patch {
    /// Bytes the patch carries itself (its inserts).
    pub fn inserted(&self) -> usize {
        self.edits
            .iter()
            .map(|e| match e {
                Edit::Insert(b) => b.len(),
                Edit::Copy { .. } => 0,
            })
            .sum()
    }

    /// The length of the body the patch builds from `base`, checking every copy
    /// against it; at most `max`.
    pub fn output_len(&self, base: &[u8], max: usize) -> Result<usize, PatchError> {
        let mut total: usize = 0;
        for e in &self.edits {
            let n = match e {
                Edit::Copy { at, len } => {
                    let out_of_range = PatchError::OutOfRange {
                        at: *at,
                        len: *len,
                        base: base.len(),
                    };
                    let end = at.checked_add(*len).ok_or(out_of_range.clone())?;
                    if end > base.len() as u64 {
                        return Err(out_of_range);
                    }
                    // `len <= base.len()`, so it fits a usize.
                    *len as usize
                }
                Edit::Insert(b) => b.len(),
            };
            total = total
                .checked_add(n)
                .filter(|t| *t <= max)
                .ok_or(PatchError::TooLong { max })?;
        }
        Ok(total)
    }

    /// The body the patch builds from `base`, at most `max` bytes. Checks every
    /// copy and the length before allocating.
    pub fn apply(&self, base: &[u8], max: usize) -> Result<Vec<u8>, PatchError> {
        let len = self.output_len(base, max)?;
        let mut out = Vec::with_capacity(len);
        for e in &self.edits {
            match e {
                // In range: `output_len` checked every copy.
                Edit::Copy { at, len } => {
                    out.extend_from_slice(&base[*at as usize..(*at + *len) as usize])
                }
                Edit::Insert(b) => out.extend_from_slice(b),
            }
        }
        Ok(out)
    }

    fn copy(&mut self, at: usize, len: usize) {
        if len == 0 {
            return;
        }
        if let Some(Edit::Copy { at: a, len: l }) = self.edits.last_mut()
            && *a + *l == at as u64
        {
            *l += len as u64;
            return;
        }
        self.edits.push(Edit::Copy {
            at: at as u64,
            len: len as u64,
        });
    }

    fn insert(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        if let Some(Edit::Insert(b)) = self.edits.last_mut() {
            b.extend_from_slice(bytes);
            return;
        }
        self.edits.push(Edit::Insert(bytes.to_vec()));
    }

    /// Compares `old` (at `old_at` in the base) and `new` block by block, both of
    /// the same length.
    fn blocks(&mut self, old: &[u8], old_at: usize, new: &[u8]) {
        debug_assert_eq!(old.len(), new.len());
        for (i, (o, n)) in old
            .chunks(BLOCK_BYTES)
            .zip(new.chunks(BLOCK_BYTES))
            .enumerate()
        {
            let at = old_at + i * BLOCK_BYTES;
            if o == n {
                self.copy(at, o.len());
            } else {
                // Only the span between the block's first and last changed bytes.
                let p = common_prefix(o, n);
                let s = common_suffix(&o[p..], &n[p..]);
                self.copy(at, p);
                self.insert(&n[p..n.len() - s]);
                self.copy(at + o.len() - s, s);
            }
        }
    }
}

/// Length of the common prefix of `a` and `b`.
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    const STEP: usize = 64;
    let n = a.len().min(b.len());
    let mut i = 0;
    while i + STEP <= n && a[i..i + STEP] == b[i..i + STEP] {
        i += STEP;
    }
    i + a[i..n]
        .iter()
        .zip(&b[i..n])
        .take_while(|(x, y)| x == y)
        .count()
}

/// Length of the common suffix of `a` and `b`.
fn common_suffix(a: &[u8], b: &[u8]) -> usize {
    const STEP: usize = 64;
    let n = a.len().min(b.len());
    let (la, lb) = (a.len(), b.len());
    let mut i = 0;
    while i + STEP <= n && a[la - i - STEP..la - i] == b[lb - i - STEP..lb - i] {
        i += STEP;
    }
    i + a[..la - i]
        .iter()
        .rev()
        .zip(b[..lb - i].iter().rev())
        .take_while(|(x, y)| x == y)
        .count()
}

/// A patch that builds `new` from `old`.
pub fn diff(old: &[u8], new: &[u8]) -> Patch {
    let p = common_prefix(old, new);
    let s = common_suffix(&old[p..], &new[p..]);
    let (om, nm) = (&old[p..old.len() - s], &new[p..new.len() - s]);
    let mut patch = Patch::default();
    patch.copy(0, p);
    if om.len() == nm.len() {
        patch.blocks(om, p, nm);
    } else {
        let n = om.len().min(nm.len());
        // Aligned at the front: the common length, then the rest of `new`.
        let mut front = Patch::default();
        front.blocks(&om[..n], p, &nm[..n]);
        front.insert(&nm[n..]);
        // Aligned at the back: the head of `new`, then the common length.
        let mut back = Patch::default();
        back.insert(&nm[..nm.len() - n]);
        back.blocks(&om[om.len() - n..], p + om.len() - n, &nm[nm.len() - n..]);
        let best = if front.inserted() <= back.inserted() {
            front
        } else {
            back
        };
        for e in best.edits {
            match e {
                Edit::Copy { at, len } => patch.copy(at as usize, len as usize),
                Edit::Insert(b) => patch.insert(&b),
            }
        }
    }
    patch.copy(old.len() - s, s);
    patch
}

/// A record sent as a patch of the record its replica holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordPatch {
    /// The writing activation (as [`crate::types::Record::ballot`]).
    pub ballot: Ballot,
    /// Its commit counter.
    pub version: u64,
    /// The set the record commits to.
    pub set: ReplicaSet,
    /// The order of the record the patch applies to.
    pub base: (Ballot, u64),
    /// The body, as edits of the base's.
    pub patch: Patch,
    /// blake3 of the new body.
    pub digest: [u8; 32],
}

impl RecordPatch {
    /// The order of the record it builds.
    pub fn order(&self) -> (Ballot, u64) {
        (self.ballot, self.version)
    }

    /// The record it builds on `base`, which must be the record it was made
    /// against; the body is checked against the digest (so a slot may keep the
    /// digest as its body's), and at most `max` bytes. What a replica applying
    /// the patch and a store replaying it both do.
    pub fn apply_to(&self, base: &Record, max: usize) -> Result<Record, PatchError> {
        if base.order() != self.base {
            return Err(PatchError::Base);
        }
        Ok(Record {
            ballot: self.ballot,
            version: self.version,
            set: self.set.clone(),
            body: self.rebuild(&base.body, max)?.into(),
        })
    }

    /// The new body from the base's, checked against the digest; at most `max`
    /// bytes.
    pub fn rebuild(&self, base: &[u8], max: usize) -> Result<Vec<u8>, PatchError> {
        let body = self.patch.apply(base, max)?;
        if *blake3::hash(&body).as_bytes() != self.digest {
            return Err(PatchError::Digest);
        }
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn check(old: &[u8], new: &[u8]) -> Patch {
        let p = diff(old, new);
        assert_eq!(p.apply(old, usize::MAX).unwrap(), new);
        p
    }

    #[test]
    fn a_patch_applies_only_to_its_own_base_and_digest() {
        let ballot = Ballot {
            round: 1,
            node: plexus_actors::NodeId::synthetic(1),
        };
        let set = ReplicaSet::single(plexus_actors::NodeId::synthetic(1));
        let base = Record {
            ballot,
            version: 1,
            set: set.clone(),
            body: b"the old body".to_vec().into(),
        };
        let next = Record {
            version: 2,
            body: b"the new body, longer".to_vec().into(),
            ..base.clone()
        };
        let patch = RecordPatch {
            ballot,
            version: 2,
            set,
            base: base.order(),
            patch: diff(&base.body, &next.body),
            digest: *blake3::hash(&next.body).as_bytes(),
        };
        assert_eq!(patch.apply_to(&base, usize::MAX), Ok(next.clone()));
        // Another record (here the one it builds), another digest, a bound too low.
        assert_eq!(patch.apply_to(&next, usize::MAX), Err(PatchError::Base));
        let forged = RecordPatch {
            digest: [0; 32],
            ..patch.clone()
        };
        assert_eq!(forged.apply_to(&base, usize::MAX), Err(PatchError::Digest));
        assert!(matches!(
            patch.apply_to(&base, 4),
            Err(PatchError::TooLong { max: 4 })
        ));
    }

    #[test]
    fn an_edit_in_place_sends_about_a_block() {
        let old: Vec<u8> = (0..1 << 20).map(|i| (i * 7 % 251) as u8).collect();
        let mut new = old.clone();
        new[10] ^= 1;
        new[500_000] ^= 1;
        new[1_048_000] ^= 1;
        let p = check(&old, &new);
        // Each changed block carries only its changed span.
        assert_eq!(p.inserted(), 3);
    }

    #[test]
    fn growth_at_one_point_is_aligned_on_the_right_side() {
        let old: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
        // Grown near the front: the rest shifts, and the back alignment finds it.
        let mut new = old.clone();
        new.splice(100..100, [1, 2, 3]);
        new[150_000] ^= 0xff;
        let p = check(&old, &new);
        assert!(p.inserted() <= BLOCK_BYTES + 3, "{}", p.inserted());
        // Shrunk near the back: the front alignment finds it.
        let mut new = old.clone();
        new.drain(199_000..199_010);
        new[1_000] ^= 0xff;
        let p = check(&old, &new);
        assert!(p.inserted() <= BLOCK_BYTES, "{}", p.inserted());
    }

    #[test]
    fn unrelated_bodies_and_empty_ones_still_round_trip() {
        check(b"", b"");
        check(b"", b"abc");
        check(b"abc", b"");
        check(b"abc", b"abc");
        let p = check(&[1u8; 10_000], &[2u8; 9_000]);
        assert_eq!(p.inserted(), 9_000);
    }

    #[test]
    fn bad_patches_are_refused_before_allocating() {
        let base = [0u8; 10];
        let over = Patch {
            edits: vec![Edit::Copy { at: 5, len: 6 }],
        };
        assert!(matches!(
            over.apply(&base, 100),
            Err(PatchError::OutOfRange { at: 5, len: 6, .. })
        ));
        let wrap = Patch {
            edits: vec![Edit::Copy {
                at: u64::MAX,
                len: 2,
            }],
        };
        assert!(matches!(
            wrap.apply(&base, 100),
            Err(PatchError::OutOfRange { .. })
        ));
        let long = Patch {
            edits: vec![Edit::Copy { at: 0, len: 10 }; 11],
        };
        assert_eq!(
            long.apply(&base, 100),
            Err(PatchError::TooLong { max: 100 })
        );
        assert_eq!(long.apply(&base, 110).unwrap().len(), 110);
    }

    #[test]
    fn a_record_patch_checks_its_digest() {
        let (old, new) = (b"hello world".to_vec(), b"hello there".to_vec());
        let rp = RecordPatch {
            ballot: Ballot::ZERO,
            version: 2,
            set: ReplicaSet::single(plexus_actors::NodeId::synthetic(1)),
            base: (Ballot::ZERO, 1),
            patch: diff(&old, &new),
            digest: *blake3::hash(&new).as_bytes(),
        };
        assert_eq!(rp.rebuild(&old, 1 << 20).unwrap(), new);
        // Applied to another base it builds something else, and says so.
        assert_eq!(rp.rebuild(b"HELLO WORLD", 1 << 20), Err(PatchError::Digest));
    }

    proptest! {
        /// Any edit script of any body round-trips through `diff`.
        #[test]
        fn diff_then_apply_gives_the_new_body(
            old in proptest::collection::vec(0u8..4, 0..20_000),
            edits in proptest::collection::vec((0usize..20_000, 0usize..50, proptest::collection::vec(any::<u8>(), 0..50)), 0..6),
        ) {
            let mut new = old.clone();
            for (at, cut, put) in edits {
                let at = at.min(new.len());
                let end = (at + cut).min(new.len());
                new.splice(at..end, put);
            }
            let p = diff(&old, &new);
            prop_assert_eq!(p.apply(&old, usize::MAX).unwrap(), new.clone());
            prop_assert!(p.inserted() <= new.len());
        }

        /// Arbitrary patches never panic, and never build past the bound.
        #[test]
        fn arbitrary_patches_fail_cleanly(
            base in proptest::collection::vec(any::<u8>(), 0..100),
            edits in proptest::collection::vec(prop_oneof![
                (any::<u64>(), any::<u64>()).prop_map(|(at, len)| Edit::Copy { at, len }),
                (0u64..120, 0u64..120).prop_map(|(at, len)| Edit::Copy { at, len }),
                proptest::collection::vec(any::<u8>(), 0..40).prop_map(Edit::Insert),
            ], 0..8),
        ) {
            let p = Patch { edits };
            if let Ok(out) = p.apply(&base, 200) {
                prop_assert!(out.len() <= 200);
                prop_assert_eq!(out.len(), p.output_len(&base, 200).unwrap());
            }
        }
    }
}
