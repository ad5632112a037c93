//! Mean pooling over a text's own tokens, then L2 normalisation.

/// The mean of the first `len` rows of a `padded_len × dims` row-major block, divided by its
/// Euclidean norm (floored at 1e-12, as `torch.nn.functional.normalize` does). Padding rows
/// (those past `len`) are left out, which is the attention-masked mean.
pub(crate) fn mean_normalised(block: &[f32], len: usize, dims: usize) -> Vec<f32> {
    let mut sum = vec![0f64; dims];
    for row in block.chunks_exact(dims).take(len) {
        for (s, v) in sum.iter_mut().zip(row) {
            *s += f64::from(*v);
        }
    }
    let count = len.max(1) as f64;
    let mean: Vec<f64> = sum.iter().map(|s| s / count).collect();
    let norm = mean.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-12);
    mean.iter().map(|v| (v / norm) as f32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_rows_are_left_out_and_the_result_has_unit_length() {
        // Two real rows, one padding row full of large values.
        let block = [1.0, 2.0, 3.0, 6.0, 1000.0, -1000.0];
        let v = mean_normalised(&block, 2, 2);
        // Mean (2, 4), norm sqrt(20).
        let norm = 20f32.sqrt();
        assert!(
            (v[0] - 2.0 / norm).abs() < 1e-7 && (v[1] - 4.0 / norm).abs() < 1e-7,
            "{v:?}"
        );
        let length: f32 = v.iter().map(|x| x * x).sum();
        assert!((length - 1.0).abs() < 1e-6);
    }

    #[test]
    fn a_zero_vector_stays_finite() {
        let v = mean_normalised(&[0.0; 4], 2, 2);
        assert_eq!(v, vec![0.0, 0.0]);
    }
}
