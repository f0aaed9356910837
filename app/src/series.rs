//! Metric series as the plots hold them, and what is done to them before drawing: the x axis
//! chosen (step, wall time or tokens), TensorBoard's debiased EMA smoothing, and min/max
//! downsampling per pixel column so a million-point series draws as a few thousand points
//! that keep every spike.

use serde::{Deserialize, Serialize};

/// One series of one run, appended to as points arrive.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Series {
    pub steps: Vec<f64>,
    pub values: Vec<f64>,
    /// Unix seconds each point was logged.
    pub wall_times: Vec<f64>,
}

impl Series {
    pub fn len(&self) -> usize {
        self.steps.len()
    }

    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    pub fn last_step(&self) -> Option<u64> {
        self.steps.last().map(|&s| s as u64)
    }

    pub fn push(&mut self, step: u64, value: f64, wall_time: f64) {
        self.steps.push(step as f64);
        self.values.push(value);
        self.wall_times.push(wall_time);
    }

    /// The x coordinate of every point on `axis`. Wall time counts from the first point;
    /// tokens read a run's `num_tokens` series (cumulative tokens at each step) and fall back to
    /// the step where it has no point.
    pub fn xs(&self, axis: XAxis, tokens: Option<&Series>) -> Vec<f64> {
        match axis {
            XAxis::Step => self.steps.clone(),
            XAxis::WallTime => {
                let t0 = self.wall_times.first().copied().unwrap_or(0.0);
                self.wall_times.iter().map(|t| t - t0).collect()
            }
            XAxis::Tokens => match tokens {
                Some(tokens) if !tokens.is_empty() => self
                    .steps
                    .iter()
                    .map(|&s| {
                        // The last token count at or before this step.
                        let i = tokens.steps.partition_point(|&t| t <= s);
                        if i == 0 { s } else { tokens.values[i - 1] }
                    })
                    .collect(),
                _ => self.steps.clone(),
            },
        }
    }
}

/// What the plots' x axis counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum XAxis {
    #[default]
    Step,
    /// Seconds since the run's first point.
    WallTime,
    /// Tokens trained on (the run's `num_tokens` series).
    Tokens,
}

impl XAxis {
    pub const ALL: [Self; 3] = [Self::Step, Self::WallTime, Self::Tokens];

    pub fn label(self) -> &'static str {
        match self {
            Self::Step => "step",
            Self::WallTime => "wall time (s)",
            Self::Tokens => "tokens",
        }
    }
}

/// TensorBoard's smoothing: an exponential moving average with weight `weight` in [0, 1),
/// debiased so the first points are not pulled towards zero. NaN and infinite values are
/// passed through and do not enter the average.
pub fn ema(values: &[f64], weight: f64) -> Vec<f64> {
    if weight <= 0.0 {
        return values.to_vec();
    }
    let weight = weight.min(0.999);
    let mut last = 0.0;
    let mut n = 0i32;
    values
        .iter()
        .map(|&v| {
            if !v.is_finite() {
                return v;
            }
            last = last * weight + (1.0 - weight) * v;
            n += 1;
            last / (1.0 - weight.powi(n))
        })
        .collect()
}

/// The points of `(xs, ys)` to draw in `columns` pixel columns over `[x_min, x_max]`: for each
/// column its first, lowest, highest and last point, in x order, plus the nearest point on
/// each side of the range so lines run to the edges. `xs` must be sorted. Series no longer
/// than `4 * columns` within the range are returned whole.
pub fn downsample_min_max(
    xs: &[f64],
    ys: &[f64],
    x_min: f64,
    x_max: f64,
    columns: usize,
) -> Vec<[f64; 2]> {
    let n = xs.len().min(ys.len());
    if n == 0 {
        return Vec::new();
    }
    let start = xs[..n].partition_point(|&x| x < x_min).saturating_sub(1);
    let end = (xs[..n].partition_point(|&x| x <= x_max) + 1).min(n);
    if start >= end {
        return Vec::new();
    }
    let columns = columns.max(1);
    if end - start <= 4 * columns || x_max <= x_min {
        return (start..end).map(|i| [xs[i], ys[i]]).collect();
    }
    let width = (x_max - x_min) / columns as f64;
    let column_of = |x: f64| (((x - x_min) / width).floor().max(-1.0) as i64).min(columns as i64);
    let mut out = Vec::with_capacity(4 * columns + 4);
    let mut i = start;
    while i < end {
        let column = column_of(xs[i]);
        let first = i;
        let (mut lo, mut hi) = (i, i);
        while i < end && column_of(xs[i]) == column {
            if ys[i] < ys[lo] || ys[lo].is_nan() {
                lo = i;
            }
            if ys[i] > ys[hi] || ys[hi].is_nan() {
                hi = i;
            }
            i += 1;
        }
        let last = i - 1;
        let mut picks = [first, lo, hi, last];
        picks.sort_unstable();
        let mut previous = usize::MAX;
        for p in picks {
            if p != previous {
                out.push([xs[p], ys[p]]);
                previous = p;
            }
        }
    }
    out
}

/// `values` mapped to log10 for a log-scale axis; values ≤ 0 have no place on it and become
/// NaN (a gap in the line).
pub fn log10_values(values: &[f64]) -> Vec<f64> {
    values
        .iter()
        .map(|&v| if v > 0.0 { v.log10() } else { f64::NAN })
        .collect()
}

/// The group a metric is listed under in the picker: its prefix before `/`
/// (`rewards/accuracy` → `rewards`), timing series under `timing`, the rest under `train`.
pub fn metric_group(name: &str) -> &str {
    if let Some((prefix, _)) = name.split_once('/') {
        return prefix;
    }
    if name.ends_with("_time")
        || name.ends_with("_s")
        || name.ends_with("_secs")
        || name.ends_with("per_s")
        || name.starts_with("time")
    {
        return "timing";
    }
    "train"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ema_matches_the_debiased_recurrence_by_hand() {
        // w = 0.5: m1 = 0.5*2 = 1 → 1/(1-0.5) = 2; m2 = 0.5*1 + 0.5*4 = 2.5 → 2.5/0.75;
        // m3 = 0.5*2.5 + 0.5*0 = 1.25 → 1.25/0.875.
        let s = ema(&[2.0, 4.0, f64::NAN, 0.0], 0.5);
        assert_eq!(s[0], 2.0);
        assert!((s[1] - 2.5 / 0.75).abs() < 1e-12);
        assert!(s[2].is_nan(), "NaN passes through");
        assert!((s[3] - 1.25 / 0.875).abs() < 1e-12);
        assert_eq!(ema(&[1.0, 5.0], 0.0), vec![1.0, 5.0]);
    }

    /// The extremes of every column, by brute force over the original points.
    fn column_extremes(
        xs: &[f64],
        ys: &[f64],
        x_min: f64,
        x_max: f64,
        columns: usize,
    ) -> Vec<(f64, f64)> {
        let width = (x_max - x_min) / columns as f64;
        (0..columns)
            .filter_map(|c| {
                let lo = x_min + c as f64 * width;
                let hi = lo + width;
                let in_column: Vec<f64> = xs
                    .iter()
                    .zip(ys)
                    .filter(|(x, _)| **x >= lo && **x < hi)
                    .map(|(_, y)| *y)
                    .collect();
                (!in_column.is_empty()).then(|| {
                    (
                        in_column.iter().copied().fold(f64::INFINITY, f64::min),
                        in_column.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                    )
                })
            })
            .collect()
    }

    #[test]
    fn a_million_points_keep_every_column_extreme_in_a_few_thousand() {
        let n: usize = 1_000_000;
        let xs: Vec<f64> = (0..n).map(|i| i as f64).collect();
        // A noisy curve with one tall spike that plain decimation would drop.
        let mut ys: Vec<f64> = (0..n)
            .map(|i| (i as f64 * 0.001).sin() + ((i * 7919) % 1000) as f64 * 1e-4)
            .collect();
        ys[543_210] = 50.0;
        let columns = 800;
        let out = downsample_min_max(&xs, &ys, 0.0, n as f64, columns);
        assert!(out.len() <= 4 * columns + 2, "{} points", out.len());
        assert!(out.windows(2).all(|w| w[0][0] <= w[1][0]), "x order kept");
        assert!(out.iter().any(|p| p[1] == 50.0), "the spike survives");
        let width = n as f64 / columns as f64;
        for (c, (lo, hi)) in column_extremes(&xs, &ys, 0.0, n as f64, columns)
            .iter()
            .enumerate()
        {
            let in_column =
                |p: &&[f64; 2]| p[0] >= c as f64 * width && p[0] < (c + 1) as f64 * width;
            let kept: Vec<f64> = out.iter().filter(in_column).map(|p| p[1]).collect();
            assert!(kept.contains(lo) && kept.contains(hi), "column {c}");
        }
    }

    #[test]
    fn a_zoomed_range_keeps_its_neighbours_and_short_series_stay_whole() {
        let xs: Vec<f64> = (0..100).map(f64::from).collect();
        let ys: Vec<f64> = xs.iter().map(|x| x * 2.0).collect();
        let out = downsample_min_max(&xs, &ys, 10.5, 20.5, 400);
        assert_eq!(
            out.first(),
            Some(&[10.0, 20.0]),
            "the point left of the range"
        );
        assert_eq!(
            out.last(),
            Some(&[21.0, 42.0]),
            "the point right of the range"
        );
        assert_eq!(out.len(), 12);
        assert!(downsample_min_max(&[], &[], 0.0, 1.0, 10).is_empty());
    }

    #[test]
    fn token_axis_reads_the_cumulative_tokens_series() {
        let mut loss = Series::default();
        let mut tokens = Series::default();
        for step in 1..=3 {
            loss.push(step, 1.0, 100.0 + step as f64);
            tokens.push(step, 512.0 * step as f64, 0.0);
        }
        assert_eq!(
            loss.xs(XAxis::Tokens, Some(&tokens)),
            vec![512.0, 1024.0, 1536.0]
        );
        assert_eq!(loss.xs(XAxis::WallTime, None), vec![0.0, 1.0, 2.0]);
        assert_eq!(loss.xs(XAxis::Tokens, None), vec![1.0, 2.0, 3.0]);
    }

    #[test]
    fn metrics_group_by_prefix_and_timing() {
        assert_eq!(metric_group("rewards/accuracy"), "rewards");
        assert_eq!(metric_group("eval/accuracy"), "eval");
        assert_eq!(metric_group("step_time"), "timing");
        assert_eq!(metric_group("tokens_per_s"), "timing");
        assert_eq!(metric_group("loss"), "train");
        assert_eq!(log10_values(&[100.0, 0.0]).first(), Some(&2.0));
    }
}
