//! Numbers and times as people read them, and the geometry of the small
//! SVG charts the templates draw (numbers only: the markup is in
//! `templates/charts.html`).

use std::time::{Duration, UNIX_EPOCH};

/// `2026-11-23 07:12:03Z`.
pub fn time(ms: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_seconds(t)
        .to_string()
        .replacen('T', " ", 1)
}

pub use crate::clock::span;
pub use crate::human::bytes;

/// `1,234,567`.
pub fn count(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

/// `97.5%`; `–` when there is nothing to divide.
pub fn percent(part: i64, whole: i64) -> String {
    if whole <= 0 {
        "–".into()
    } else {
        format!("{:.1}%", part as f64 * 100.0 / whole as f64)
    }
}

/// A bar chart: one bar per value, left to right, scaled to the largest.
pub struct Bars {
    pub width: u32,
    pub height: u32,
    pub bars: Vec<Bar>,
    /// What the chart shows, for screen readers and the caption.
    pub label: String,
    pub first: String,
    pub last: String,
    pub max: String,
}

pub struct Bar {
    pub x: String,
    pub y: String,
    pub w: String,
    pub h: String,
    /// The tooltip: when and how many.
    pub title: String,
}

impl Bars {
    /// `points` are (label, value) in display order. Empty values draw a
    /// hairline so the time axis stays readable.
    pub fn new(label: &str, points: &[(String, i64)], width: u32, height: u32) -> Bars {
        let max = points.iter().map(|p| p.1).max().unwrap_or(0).max(1);
        let n = points.len().max(1) as f64;
        let slot = f64::from(width) / n;
        let gap = if slot > 4.0 { 1.0 } else { 0.0 };
        let bars = points
            .iter()
            .enumerate()
            .map(|(i, (name, v))| {
                let h = (*v as f64 / max as f64 * f64::from(height)).max(if *v > 0 {
                    1.0
                } else {
                    0.5
                });
                Bar {
                    x: format!("{:.2}", i as f64 * slot),
                    y: format!("{:.2}", f64::from(height) - h),
                    w: format!("{:.2}", (slot - gap).max(0.5)),
                    h: format!("{h:.2}"),
                    title: format!("{name}: {}", count(*v)),
                }
            })
            .collect();
        Bars {
            width,
            height,
            bars,
            label: label.to_string(),
            first: points.first().map(|p| p.0.clone()).unwrap_or_default(),
            last: points.last().map(|p| p.0.clone()).unwrap_or_default(),
            max: count(points.iter().map(|p| p.1).max().unwrap_or(0)),
        }
    }
}

/// A line chart of a few series over the same time buckets, scaled to the
/// largest value of any; a missing value (no sample then) leaves a gap in
/// the line's points rather than a drop to zero.
pub struct Lines {
    pub width: u32,
    pub height: u32,
    pub label: String,
    pub first: String,
    pub last: String,
    pub max: String,
    pub series: Vec<Line>,
}

pub struct Line {
    pub name: String,
    /// s0..s3: the colour, in the stylesheet.
    pub class: String,
    /// SVG polyline points.
    pub points: String,
    /// The legend's number: the window's total or the latest value.
    pub latest: String,
}

/// What a line's legend says.
#[derive(Clone, Copy)]
pub enum Legend {
    /// Counts per bucket: their sum over the chart.
    Total,
    /// A sampled gauge: its latest value.
    Latest,
}

impl Lines {
    /// `times` label the buckets (first and last are shown); each series
    /// has one value per bucket. `fmt` writes a value for people.
    pub fn new(
        label: &str,
        times: &[String],
        series: Vec<(String, Vec<Option<i64>>)>,
        fmt: fn(i64) -> String,
        legend: Legend,
    ) -> Lines {
        let (width, height) = (600u32, 80u32);
        let max = series
            .iter()
            .flat_map(|s| s.1.iter().flatten())
            .copied()
            .max()
            .unwrap_or(0);
        let scale = max.max(1) as f64;
        let step = f64::from(width) / (times.len().max(2) - 1) as f64;
        let series = series
            .into_iter()
            .enumerate()
            .map(|(i, (name, values))| Line {
                class: format!("s{}", i % 4),
                points: values
                    .iter()
                    .enumerate()
                    .filter_map(|(x, v)| {
                        v.map(|v| {
                            format!(
                                "{:.1},{:.1}",
                                x as f64 * step,
                                f64::from(height) - v as f64 / scale * f64::from(height - 2) - 1.0
                            )
                        })
                    })
                    .collect::<Vec<_>>()
                    .join(" "),
                latest: match legend {
                    Legend::Total => fmt(values.iter().flatten().sum()),
                    Legend::Latest => values
                        .iter()
                        .rev()
                        .flatten()
                        .next()
                        .map_or("–".into(), |v| fmt(*v)),
                },
                name,
            })
            .collect();
        Lines {
            width,
            height,
            label: label.to_string(),
            first: times.first().cloned().unwrap_or_default(),
            last: times.last().cloned().unwrap_or_default(),
            max: fmt(max),
            series,
        }
    }
}

/// Counts per time bucket from sparse (bucket, n) rows: every bucket from
/// `first` for `len` buckets, missing ones as zero.
pub fn dense(rows: &[(i64, i64)], first: i64, len: i64) -> Vec<i64> {
    let mut out = vec![0; len.max(0) as usize];
    for (b, n) in rows {
        if (first..first + len).contains(b) {
            out[(b - first) as usize] += n;
        }
    }
    out
}

/// Time buckets of `width` minutes, `len` of them, the last one now.
pub struct Axis {
    pub first: i64,
    pub width: i64,
    pub len: usize,
}

impl Axis {
    pub fn last_hour(now_ms: i64) -> Axis {
        Axis::ending(now_ms, 1, 60)
    }

    pub fn last_day(now_ms: i64) -> Axis {
        Axis::ending(now_ms, 10, 24 * 6)
    }

    pub fn ending(now_ms: i64, width: i64, len: usize) -> Axis {
        let last = now_ms / 60_000 / width;
        Axis {
            first: (last - len as i64 + 1) * width,
            width,
            len,
        }
    }

    pub fn index(&self, minute: i64) -> Option<usize> {
        let i = (minute - self.first).div_euclid(self.width);
        (0..self.len as i64).contains(&i).then_some(i as usize)
    }

    pub fn labels(&self) -> Vec<String> {
        (0..self.len as i64)
            .map(|i| clock_label((self.first + i * self.width) * 60_000))
            .collect()
    }
}

/// `07:12` (UTC).
pub fn clock_label(ms: i64) -> String {
    let t = time(ms);
    format!("{} UTC", &t[11..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_scale_to_the_largest_and_leave_gaps() {
        let times: Vec<String> = (0..3).map(|i| i.to_string()).collect();
        let l = Lines::new(
            "t",
            &times,
            vec![
                ("a".into(), vec![Some(0), None, Some(10)]),
                ("b".into(), vec![Some(5), Some(5), Some(5)]),
            ],
            count,
            Legend::Latest,
        );
        assert_eq!(l.max, "10");
        assert_eq!(
            l.series[0].points, "0.0,79.0 600.0,1.0",
            "no point for the gap"
        );
        assert_eq!(l.series[1].points.split(' ').count(), 3);
        assert_eq!(
            (l.series[0].latest.as_str(), l.series[1].class.as_str()),
            ("10", "s1")
        );
    }

    #[test]
    fn readable_numbers() {
        assert_eq!(count(1_234_567), "1,234,567");
        assert_eq!(count(999), "999");
        assert_eq!(count(-1000), "-1,000");
        assert_eq!(bytes(999), "999 B");
        assert_eq!(bytes(12_345_678), "12.3 MB");
        assert_eq!(span(450), "450ms");
        assert_eq!(span(192_000), "3m 12s");
        assert_eq!(span(7_500_000), "2h 5m");
        assert_eq!(span(90_000_000), "1d 1h");
        assert_eq!(percent(1, 3), "33.3%");
        assert_eq!(percent(1, 0), "–");
        assert_eq!(time(0), "1970-01-01 00:00:00Z");
    }

    #[test]
    fn bars_scale_to_the_largest_and_keep_empty_slots() {
        let pts: Vec<(String, i64)> = vec![("a".into(), 10), ("b".into(), 0), ("c".into(), 5)];
        let b = Bars::new("x", &pts, 300, 100);
        assert_eq!(b.bars.len(), 3);
        assert_eq!(b.bars[0].h, "100.00");
        assert_eq!(b.bars[0].y, "0.00");
        assert_eq!(b.bars[2].h, "50.00");
        assert_eq!(b.bars[1].h, "0.50");
        assert_eq!(b.bars[2].x, "200.00");
        assert_eq!(b.bars[2].title, "c: 5");
        assert_eq!(dense(&[(3, 2), (5, 1), (9, 4)], 3, 4), vec![2, 0, 1, 0]);
    }
}
