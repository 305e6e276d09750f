//! Charts drawn on the server as SVG: no script, nothing to load, readable without colour
//! (each bar has a `<title>` with its numbers, and every chart a table-shaped legend).

use maud::{Markup, html};

/// One series of a bar chart: its name, its colour slot (0-7, styled by the stylesheet) and
/// a value per column. Values below zero are drawn below the axis.
#[derive(Debug, Clone)]
pub struct Series {
    /// Shown in the legend and the bars' titles.
    pub name: String,
    /// The colour slot.
    pub slot: usize,
    /// One value per column.
    pub values: Vec<i64>,
}

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 180.0;
const LEFT: f64 = 36.0;
const BOTTOM: f64 = 18.0;

/// Stacked bars, one column per label (days, usually): positive series stack upward from the
/// axis, negative ones downward.
pub fn bars(labels: &[String], series: &[Series]) -> Markup {
    let columns = labels.len().max(1);
    let column_sum = |i: usize, sign: i64| -> i64 {
        series
            .iter()
            .filter_map(|s| s.values.get(i).copied())
            .filter(|v| v.signum() == sign)
            .sum::<i64>()
            .abs()
    };
    let top = (0..columns).map(|i| column_sum(i, 1)).max().unwrap_or(0);
    let below = (0..columns).map(|i| column_sum(i, -1)).max().unwrap_or(0);
    let span = (top + below).max(1) as f64;
    let plot = HEIGHT - BOTTOM - 4.0;
    let axis_y = 4.0 + plot * top as f64 / span;
    let step = (WIDTH - LEFT) / columns as f64;
    let bar_w = (step * 0.7).max(1.0);
    let scale = plot / span;
    let every = columns.div_ceil(10).max(1);
    html! {
        figure.chart {
            svg viewBox={ "0 0 " (WIDTH) " " (HEIGHT) } role="img" preserveAspectRatio="none"
                aria-label={ (series.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", ")) " per day" } {
                line.axis x1=(LEFT) y1=(fmt(axis_y)) x2=(WIDTH) y2=(fmt(axis_y)) {}
                text.tick x="2" y="12" { (top) }
                @if below > 0 { text.tick x="2" y=(fmt(HEIGHT - BOTTOM)) { "-" (below) } }
                @for i in 0..labels.len() {
                    @let x = LEFT + step * i as f64 + (step - bar_w) / 2.0;
                    @let mut up = axis_y;
                    @let mut down = axis_y;
                    @for s in series {
                        @let v = s.values.get(i).copied().unwrap_or(0);
                        @if v != 0 {
                            @let h = (v.abs() as f64 * scale).max(1.0);
                            @let y = if v > 0 { up -= h; up } else { let y = down; down += h; y };
                            rect class={ "s" (s.slot % 8) } x=(fmt(x)) y=(fmt(y)) width=(fmt(bar_w)) height=(fmt(h)) {
                                title { (labels[i]) ": " (s.name) " " (v.abs()) }
                            }
                        }
                    }
                    @if i % every == 0 {
                        text.tick x=(fmt(x)) y=(fmt(HEIGHT - 4.0)) { (labels[i]) }
                    }
                }
            }
            figcaption {
                @for s in series {
                    span.key { i class={ "sw s" (s.slot % 8) } {} (s.name) " " strong { (s.values.iter().map(|v| v.abs()).sum::<i64>()) } }
                }
            }
        }
    }
}

/// Horizontal bars, one row per (name, value), longest first: a table with a bar per row.
pub fn ranking(rows: &[(String, i64)]) -> Markup {
    let max = rows.iter().map(|(_, v)| *v).max().unwrap_or(0).max(1) as f64;
    html! {
        table.ranking {
            tbody {
                @for (name, value) in rows {
                    tr {
                        td.name { code { (name) } }
                        td.bar {
                            svg viewBox="0 0 100 8" preserveAspectRatio="none" aria-hidden="true" {
                                rect.s0 x="0" y="0" height="8" width=(fmt(100.0 * *value as f64 / max)) {}
                            }
                        }
                        td.num { (value) }
                    }
                }
            }
        }
    }
}

/// A coordinate with one decimal.
fn fmt(v: f64) -> String {
    format!("{v:.1}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_draw_one_rect_per_nonzero_value_with_a_title() {
        let labels = vec!["11-01".to_owned(), "11-02".to_owned()];
        let svg = bars(
            &labels,
            &[
                Series {
                    name: "follows".into(),
                    slot: 0,
                    values: vec![3, 0],
                },
                Series {
                    name: "unfollows".into(),
                    slot: 1,
                    values: vec![-1, -2],
                },
            ],
        )
        .into_string();
        assert_eq!(svg.matches("<rect").count(), 3);
        assert!(svg.contains("<title>11-02: unfollows 2</title>"));
        assert!(svg.contains("follows <strong>3</strong>"));
    }

    #[test]
    fn names_are_escaped() {
        let out = ranking(&[("<script>".into(), 2)]).into_string();
        assert!(out.contains("&lt;script&gt;"));
        assert!(!out.contains("<script>"));
    }
}
