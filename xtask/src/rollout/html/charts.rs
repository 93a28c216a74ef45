//! The report's charts as SVG, drawn with plotters' SVG backend. Text goes into the SVG as
//! `<text>` elements that the browser renders, so no font is read here (plotters is built
//! without its `ttf` feature: nothing of fontconfig or FreeType).

use plotters::prelude::*;

use super::series::{Mark, Marker};

/// Width and height of a chart, in pixels.
const SIZE: (u32, u32) = (1100, 300);

/// Why a chart could not be drawn.
#[derive(Debug, thiserror::Error)]
#[error("drawing the chart `{title}`: {message}")]
pub struct ChartError {
    title: String,
    message: String,
}

/// One line of a chart.
pub struct Line {
    /// The legend's name.
    pub name: String,
    /// Its colour.
    pub color: RGBColor,
    /// (seconds, value), in time order; gaps where a value is unknown.
    pub points: Vec<(f64, Option<f64>)>,
}

/// A horizontal limit (an SLO).
pub struct Limit {
    /// The legend's name.
    pub name: String,
    /// Its colour.
    pub color: RGBColor,
    /// The value.
    pub value: f64,
}

/// One chart.
pub struct Chart {
    /// The caption.
    pub title: String,
    /// The unit of the y axis.
    pub unit: String,
    /// The lines.
    pub lines: Vec<Line>,
    /// The SLO lines.
    pub limits: Vec<Limit>,
    /// A fixed top of the y axis (e.g. 100 for a share).
    pub y_top: Option<f64>,
}

/// Colour of a marker.
fn marker_color(mark: &Mark) -> RGBColor {
    match mark {
        Mark::Stage => RGBColor(110, 110, 110),
        Mark::Approval => RGBColor(128, 0, 160),
        Mark::Gate(verdict) if verdict == "pass" => RGBColor(0, 140, 60),
        Mark::Gate(verdict) if verdict == "fail" => RGBColor(210, 0, 0),
        Mark::Gate(_) => RGBColor(230, 140, 0),
        Mark::Rollback => RGBColor(210, 0, 0),
    }
}

/// The top of the y axis: the data and the limits with some room, but a spike of more than
/// four times the largest limit is cut (and said so) rather than flatten everything else.
fn y_top(chart: &Chart) -> (f64, bool) {
    if let Some(top) = chart.y_top {
        return (top, false);
    }
    let data = chart
        .lines
        .iter()
        .flat_map(|l| l.points.iter().filter_map(|p| p.1))
        .fold(0.0_f64, f64::max);
    let limit = chart.limits.iter().map(|l| l.value).fold(0.0_f64, f64::max);
    let cap = if limit > 0.0 { 4.0 * limit } else { f64::MAX };
    let top = data.min(cap).max(limit) * 1.15;
    (if top > 0.0 { top } else { 1.0 }, data > cap)
}

/// The chart as an SVG document, with `markers` on its time axis (0..`end` seconds); labels
/// are written beside the markers when `labels` is set.
pub fn svg(
    chart: &Chart,
    end: f64,
    markers: &[Marker],
    labels: bool,
) -> Result<String, ChartError> {
    let mut out = String::new();
    draw(chart, end, markers, labels, &mut out).map_err(|message| ChartError {
        title: chart.title.clone(),
        message,
    })?;
    Ok(out)
}

fn draw(
    chart: &Chart,
    end: f64,
    markers: &[Marker],
    labels: bool,
    out: &mut String,
) -> Result<(), String> {
    let fail = |e: &dyn std::fmt::Display| e.to_string();
    let (top, cut) = y_top(chart);
    let end = end.max(1.0);
    let root = SVGBackend::with_string(out, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| fail(&e))?;
    let caption = if cut {
        format!("{} (cut at {top:.0} {})", chart.title, chart.unit)
    } else {
        chart.title.clone()
    };
    let mut ctx = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0..end, 0.0..top)
        .map_err(|e| fail(&e))?;
    ctx.configure_mesh()
        .x_desc("seconds since the start")
        .y_desc(chart.unit.as_str())
        .light_line_style(RGBColor(240, 240, 240))
        .draw()
        .map_err(|e| fail(&e))?;

    // A label in the right half of the chart is written to the left of its marker, so that
    // it stays inside the chart.
    let late = |t: f64| t > end * 0.6;
    let side = |t: f64| if late(t) { -1.0 } else { 1.0 };
    let anchor = |t: f64| {
        use plotters::style::text_anchor::{HPos, Pos, VPos};
        Pos::new(if late(t) { HPos::Right } else { HPos::Left }, VPos::Top)
    };
    // Markers first, so the data is drawn over them.
    for (index, m) in markers.iter().enumerate() {
        let color = marker_color(&m.mark);
        match &m.mark {
            Mark::Stage | Mark::Rollback => {
                let width = if m.mark == Mark::Rollback { 3 } else { 1 };
                ctx.draw_series(std::iter::once(PathElement::new(
                    vec![(m.t, 0.0), (m.t, top)],
                    color.stroke_width(width),
                )))
                .map_err(|e| fail(&e))?;
                // Every chart names the stages; rollbacks are named where labels are asked.
                if m.mark == Mark::Stage || labels {
                    let row = if m.mark == Mark::Stage {
                        0.97 - 0.07 * (index % 2) as f64
                    } else {
                        0.62
                    };
                    ctx.draw_series(std::iter::once(Text::new(
                        m.label.clone(),
                        (m.t + side(m.t) * end * 0.003, top * row),
                        ("sans-serif", 12)
                            .into_font()
                            .color(&color)
                            .pos(anchor(m.t)),
                    )))
                    .map_err(|e| fail(&e))?;
                }
            }
            Mark::Approval => {
                ctx.draw_series(std::iter::once(TriangleMarker::new(
                    (m.t, top * 0.8),
                    6,
                    color.filled(),
                )))
                .map_err(|e| fail(&e))?;
                if labels {
                    ctx.draw_series(std::iter::once(Text::new(
                        m.label.clone(),
                        (m.t + side(m.t) * end * 0.004, top * 0.76),
                        ("sans-serif", 11)
                            .into_font()
                            .color(&color)
                            .pos(anchor(m.t)),
                    )))
                    .map_err(|e| fail(&e))?;
                }
            }
            Mark::Gate(_) => {
                ctx.draw_series(std::iter::once(Circle::new(
                    (m.t, top * 0.03),
                    5,
                    color.filled(),
                )))
                .map_err(|e| fail(&e))?;
            }
        }
    }

    for limit in &chart.limits {
        let color = limit.color;
        ctx.draw_series(DashedLineSeries::new(
            [(0.0, limit.value), (end, limit.value)],
            8,
            5,
            color.stroke_width(1),
        ))
        .map_err(|e| fail(&e))?
        .label(limit.name.clone())
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    for line in &chart.lines {
        let color = line.color;
        // One series per run of known values, so that a gap is not drawn as a straight line.
        let mut runs: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
        for (t, value) in &line.points {
            match value {
                Some(v) => runs
                    .last_mut()
                    .expect("one run at least")
                    .push((*t, v.min(top))),
                None if runs.last().is_some_and(|r| !r.is_empty()) => runs.push(Vec::new()),
                None => {}
            }
        }
        for (index, run) in runs.into_iter().filter(|r| !r.is_empty()).enumerate() {
            let drawn = ctx
                .draw_series(LineSeries::new(run, color.stroke_width(2)))
                .map_err(|e| fail(&e))?;
            if index == 0 {
                drawn.label(line.name.clone()).legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
            }
        }
    }
    ctx.configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(200, 200, 200))
        .draw()
        .map_err(|e| fail(&e))?;
    root.present().map_err(|e| fail(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_is_an_svg_with_its_lines_limits_and_stage_markers() {
        let chart = Chart {
            title: "P95 latency".into(),
            unit: "ms".into(),
            lines: vec![Line {
                name: "canary P95".into(),
                color: BLUE,
                points: vec![(0.0, Some(3.0)), (1.0, None), (2.0, Some(400.0))],
            }],
            limits: vec![Limit {
                name: "SLO P95 35 ms".into(),
                color: RED,
                value: 35.0,
            }],
            y_top: None,
        };
        let markers = [Marker {
            t: 1.0,
            mark: Mark::Stage,
            stage: "week-3".into(),
            label: "week-3".into(),
            detail: String::new(),
        }];
        let svg = svg(&chart, 2.0, &markers, true).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..80]);
        for text in ["week-3", "canary P95", "SLO P95 35 ms", "cut at 161 ms"] {
            assert!(svg.contains(text), "{text} missing");
        }
        assert!(!svg.contains("http://fonts"), "no font from the network");
    }
}
