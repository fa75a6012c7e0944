//! A tiny deterministic generator for randomized tests (no dependency, same steps every run).

/// Returns `next(n)`: a number in `0..n`, from a fixed sequence determined by `seed`.
pub fn sequence(mut seed: u64) -> impl FnMut(u64) -> u64 {
    move |n| {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (seed >> 33) % n
    }
}
