//! Squared L2 distance with the widest SIMD the CPU has, chosen once at runtime
//! (the build does not assume `-C target-cpu`), plus normalisation and prefetch.

/// Squared Euclidean distance between two slices of equal length.
#[derive(Clone, Copy)]
pub(crate) struct L2Squared {
    kernel: unsafe fn(&[f32], &[f32]) -> f32,
}

impl std::fmt::Debug for L2Squared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("L2Squared").finish_non_exhaustive()
    }
}

impl L2Squared {
    pub(crate) fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                return Self {
                    kernel: x86::l2_squared_avx512,
                };
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                return Self {
                    kernel: x86::l2_squared_avx2,
                };
            }
        }
        Self {
            kernel: l2_squared_scalar,
        }
    }

    #[inline]
    pub(crate) fn eval(&self, a: &[f32], b: &[f32]) -> f32 {
        debug_assert_eq!(a.len(), b.len());
        // SAFETY: `detect` only picks a kernel whose CPU features are present.
        unsafe { (self.kernel)(a, b) }
    }
}

fn l2_squared_scalar(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// Scales `v` to unit length; false when it has no direction (zero or not finite).
pub(crate) fn normalize(v: &mut [f32]) -> bool {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if !norm.is_finite() || norm == 0.0 {
        return false;
    }
    v.iter_mut().for_each(|x| *x /= norm);
    true
}

/// Hints the CPU to pull `bytes` starting at `ptr` into cache.
#[inline(always)]
pub(crate) fn prefetch<T>(ptr: *const T, bytes: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let base = ptr.cast::<i8>();
        let mut offset = 0;
        while offset < bytes {
            // SAFETY: prefetch never faults, whatever the address.
            unsafe { _mm_prefetch(base.wrapping_add(offset), _MM_HINT_T0) };
            offset += 64;
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (ptr, bytes);
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// One kernel per vector width: four independent accumulators hide the FMA
    /// latency; whole registers first, the last few values in scalar code.
    macro_rules! l2_squared_kernel {
        ($name:ident, $feature:literal, $lanes:literal, $zero:ident, $load:ident, $sub:ident, $fmadd:ident, $add:ident, $reduce:path) => {
            #[target_feature(enable = $feature)]
            pub(super) unsafe fn $name(a: &[f32], b: &[f32]) -> f32 {
                let n = a.len().min(b.len());
                let (pa, pb) = (a.as_ptr(), b.as_ptr());
                let mut acc = [$zero(); 4];
                let mut i = 0;
                while i + 4 * $lanes <= n {
                    for (lane, sum) in acc.iter_mut().enumerate() {
                        let d = $sub(
                            $load(pa.add(i + lane * $lanes)),
                            $load(pb.add(i + lane * $lanes)),
                        );
                        *sum = $fmadd(d, d, *sum);
                    }
                    i += 4 * $lanes;
                }
                while i + $lanes <= n {
                    let d = $sub($load(pa.add(i)), $load(pb.add(i)));
                    acc[0] = $fmadd(d, d, acc[0]);
                    i += $lanes;
                }
                let sum = $add($add(acc[0], acc[1]), $add(acc[2], acc[3]));
                $reduce(sum) + super::l2_squared_scalar(&a[i..n], &b[i..n])
            }
        };
    }

    l2_squared_kernel!(
        l2_squared_avx2,
        "avx2,fma",
        8,
        _mm256_setzero_ps,
        _mm256_loadu_ps,
        _mm256_sub_ps,
        _mm256_fmadd_ps,
        _mm256_add_ps,
        sum_avx2
    );
    l2_squared_kernel!(
        l2_squared_avx512,
        "avx512f",
        16,
        _mm512_setzero_ps,
        _mm512_loadu_ps,
        _mm512_sub_ps,
        _mm512_fmadd_ps,
        _mm512_add_ps,
        _mm512_reduce_add_ps
    );

    #[target_feature(enable = "avx2")]
    fn sum_avx2(v: __m256) -> f32 {
        let half = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let quad = _mm_add_ps(half, _mm_movehl_ps(half, half));
        _mm_cvtss_f32(_mm_add_ss(quad, _mm_shuffle_ps(quad, quad, 1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simd_kernel_matches_scalar_for_every_tail_length() {
        let dist = L2Squared::detect();
        for len in [0, 1, 7, 8, 15, 16, 31, 33, 64, 100, 384, 768, 769] {
            let a: Vec<f32> = (0..len).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..len).map(|i| (i as f32 * 0.11).cos()).collect();
            let want = l2_squared_scalar(&a, &b);
            let got = dist.eval(&a, &b);
            assert!(
                (want - got).abs() <= 1e-4 * want.max(1.0),
                "len {len}: {got} vs {want}"
            );
        }
    }

    #[test]
    fn normalize_rejects_vectors_without_direction() {
        let mut v = vec![3.0, 4.0];
        assert!(normalize(&mut v));
        assert_eq!(v, vec![0.6, 0.8]);
        assert!(!normalize(&mut [0.0, 0.0]));
        assert!(!normalize(&mut [f32::NAN, 1.0]));
    }
}
