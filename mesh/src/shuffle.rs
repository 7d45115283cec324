//! A random order of `0..4^k` that takes no memory: membership's probe rounds.
//!
//! SWIM probes its members in a randomised round-robin. Held as a shuffled list, a
//! round costs every node 8 bytes per member (a statement per entry): 0.8 GB in a
//! simulated world of 10,000 full views. [`Shuffle`] computes the round's `i`-th
//! place instead: a four-round Feistel network over the smallest power of four
//! that holds the length asked for, keyed by the round's random keys. The range is
//! less than four times that length (and at least 4); a caller walks all of it and
//! skips the places past what it holds, so what it adds before the walk reaches
//! them is visited too.

use plexus_actors::rng::DetRng;

/// A bijection of `0..domain`, drawn at random.
#[derive(Clone, Debug, Default)]
pub(crate) struct Shuffle {
    /// Bits in each half of the Feistel network's input (0: an empty range).
    half_bits: u32,
    keys: [u64; 4],
}

impl Shuffle {
    /// A random order of `0..domain`, where the domain is the smallest power of
    /// four, at least 4, that holds `len`.
    pub(crate) fn new(len: u32, rng: &mut DetRng) -> Self {
        let bits = (u32::BITS - len.saturating_sub(1).leading_zeros()).max(2);
        Self {
            half_bits: bits.div_ceil(2),
            keys: [
                rng.next_u64(),
                rng.next_u64(),
                rng.next_u64(),
                rng.next_u64(),
            ],
        }
    }

    /// How many places (at most 2^32).
    pub(crate) fn domain(&self) -> u64 {
        if self.half_bits == 0 {
            0
        } else {
            1 << (2 * self.half_bits)
        }
    }

    /// The value at place `i` (`None` at the end). Distinct places give distinct
    /// values, all in `0..domain`.
    pub(crate) fn at(&self, i: u64) -> Option<u32> {
        if i >= self.domain() {
            return None;
        }
        let mask = (1u64 << self.half_bits) - 1;
        let (mut left, mut right) = (i >> self.half_bits, i & mask);
        for key in self.keys {
            let next = left ^ (mix(right ^ key) & mask);
            left = right;
            right = next;
        }
        u32::try_from((left << self.half_bits) | right).ok()
    }
}

/// SplitMix64's finaliser: every input bit moves every output bit.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(s: &Shuffle) -> Vec<u32> {
        (0..s.domain()).map(|i| s.at(i).expect("inside")).collect()
    }

    #[test]
    fn every_length_gets_a_bijection_of_the_power_of_four_above_it() {
        let mut rng = DetRng::new(7);
        assert_eq!(Shuffle::default().domain(), 0);
        assert_eq!(Shuffle::default().at(0), None);
        for len in 0..1100u32 {
            let s = Shuffle::new(len, &mut rng);
            let d = s.domain();
            assert!(d >= u64::from(len).max(4) && (d < 4 * u64::from(len) || d == 4));
            assert_eq!(d.trailing_zeros() % 2, 0, "{d} is a power of four");
            let mut seen = vec![false; d as usize];
            for v in order(&s) {
                assert!(!seen[v as usize], "len {len}: {v} twice");
                seen[v as usize] = true;
            }
            assert_eq!(s.at(d), None);
        }
    }

    #[test]
    fn a_large_round_is_a_bijection_too() {
        let s = Shuffle::new(100_003, &mut DetRng::new(3));
        let mut seen = vec![false; s.domain() as usize];
        for v in order(&s) {
            assert!(!seen[v as usize]);
            seen[v as usize] = true;
        }
    }

    #[test]
    fn rounds_differ_and_look_uniform() {
        let mut rng = DetRng::new(11);
        let (a, b) = (Shuffle::new(1000, &mut rng), Shuffle::new(1000, &mut rng));
        let (oa, ob) = (order(&a), order(&b));
        assert_ne!(oa, ob);
        // Few fixed points, as a uniform shuffle has (one expected).
        let fixed = oa
            .iter()
            .enumerate()
            .filter(|(i, v)| *i as u32 == **v)
            .count();
        assert!(fixed < 10, "{fixed} fixed points");
        // Neighbouring places land far apart: no stride the members would share.
        let near = oa.windows(2).filter(|w| w[0].abs_diff(w[1]) <= 2).count();
        assert!(near < 30, "{near} neighbours stay neighbours");
        // Where one value lands over many rounds: each quarter of the round about
        // as often (2,000 rounds, 500 expected a quarter).
        let mut quarters = [0u32; 4];
        for _ in 0..2000 {
            let s = Shuffle::new(1000, &mut rng);
            let place = (0..s.domain())
                .position(|i| s.at(i) == Some(7))
                .expect("there");
            quarters[place * 4 / s.domain() as usize] += 1;
        }
        assert!(
            quarters.iter().all(|&q| (400..600).contains(&q)),
            "{quarters:?}"
        );
    }
}
