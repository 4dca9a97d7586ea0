//! Sorting many floats: a least-significant-digit radix sort on their order-preserving bit
//! patterns, for the columns drift and profiling sort whole (a million live values per
//! feature). It is `total_cmp`'s order (`-0.0` before `0.0`, NaN last by sign), so it can
//! replace `sort_unstable_by(f64::total_cmp)` anywhere; small slices still use that.
//!
//! Cost: one pass to count every digit's histogram, then one scatter pass per 11-bit digit that
//! is not the same for every value (six at most), against `n log n` comparisons; about 4x
//! faster than pdqsort on a million normal values (`sorts_as_total_cmp_does` checks the order,
//! `bench/drift.sh` the time).

/// Slices shorter than this are sorted by comparison.
const SMALL: usize = 4096;
const BITS: u32 = 11;
const BUCKETS: usize = 1 << BITS;
const DIGITS: usize = 64_usize.div_ceil(BITS as usize);

/// The bits of `x` as an unsigned integer in `f64::total_cmp`'s order.
#[inline]
fn key(x: f64) -> u64 {
    let b = x.to_bits();
    if b >> 63 == 1 { !b } else { b | (1 << 63) }
}

#[inline]
fn value(k: u64) -> f64 {
    f64::from_bits(if k >> 63 == 1 { k & !(1 << 63) } else { !k })
}

/// Sorts `v` ascending in `f64::total_cmp`'s order.
pub fn sort_floats(v: &mut [f64]) {
    if v.len() < SMALL {
        v.sort_unstable_by(f64::total_cmp);
        return;
    }
    let mut keys: Vec<u64> = v.iter().map(|x| key(*x)).collect();
    let mut counts = vec![[0usize; BUCKETS]; DIGITS];
    for k in &keys {
        for (d, c) in counts.iter_mut().enumerate() {
            c[((k >> (d as u32 * BITS)) as usize) & (BUCKETS - 1)] += 1;
        }
    }
    let mut other = vec![0u64; keys.len()];
    for (d, c) in counts.iter_mut().enumerate() {
        // A digit every value shares orders nothing.
        if c.contains(&keys.len()) {
            continue;
        }
        let mut at = 0;
        for n in c.iter_mut() {
            let here = *n;
            *n = at;
            at += here;
        }
        let shift = d as u32 * BITS;
        for k in &keys {
            let b = ((k >> shift) as usize) & (BUCKETS - 1);
            other[c[b]] = *k;
            c[b] += 1;
        }
        std::mem::swap(&mut keys, &mut other);
    }
    for (x, k) in v.iter_mut().zip(&keys) {
        *x = value(*k);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorts_as_total_cmp_does() {
        let mut rng = crate::rng::Rng::new(7);
        let specials = vec![
            0.0,
            -0.0,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::MIN_POSITIVE,
            -f64::MIN_POSITIVE,
            f64::MAX,
            f64::MIN,
            1e-310,
            -1e-310,
        ];
        for n in [0, 1, 5, SMALL - 1, SMALL, 50_000] {
            let mut v: Vec<f64> = (0..n)
                .map(|i| match i % 4 {
                    0 => rng.normal() * 1e3,
                    1 => (rng.next_f64() * 10.0).round(),
                    2 => -rng.next_f64(),
                    _ => specials[i % specials.len()],
                })
                .collect();
            v.append(&mut specials.clone());
            let mut want = v.clone();
            want.sort_unstable_by(f64::total_cmp);
            sort_floats(&mut v);
            let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&v), bits(&want), "n = {n}");
        }
    }

    #[test]
    fn keys_keep_the_order_of_the_values() {
        let xs = [
            f64::NEG_INFINITY,
            -2.5,
            -0.0,
            0.0,
            1e-300,
            3.0,
            f64::INFINITY,
        ];
        for w in xs.windows(2) {
            assert!(key(w[0]) < key(w[1]), "{w:?}");
        }
        for x in xs {
            assert_eq!(value(key(x)).to_bits(), x.to_bits());
        }
    }
}
