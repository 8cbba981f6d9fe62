//! `--plot FILE`: the run's timeline as an SVG (plotters' SVG backend; text is SVG `<text>`,
//! no font files): calls asked for and ended per second above, request → INVITE p50/p99 below.

use std::path::Path;

use plotters::prelude::*;

use super::report::Second;

/// Plot failures (I/O or drawing).
#[derive(Debug, thiserror::Error)]
#[error("cannot draw the plot {path}: {message} (check that its directory exists and is writable)")]
pub struct PlotError {
    path: String,
    message: String,
}

/// A line of the rate panel: its label, colour and value per second.
type RateLine = (&'static str, RGBColor, fn(&Second) -> f64);
/// A line of the latency panel (a second may have no value).
type LatencyLine = (&'static str, RGBColor, fn(&Second) -> Option<f64>);

/// Writes the SVG for `timeline` to `path`.
pub fn write(path: &Path, title: &str, timeline: &[Second]) -> Result<(), PlotError> {
    let svg = render(title, timeline).map_err(|message| PlotError {
        path: path.display().to_string(),
        message,
    })?;
    std::fs::write(path, svg).map_err(|e| PlotError {
        path: path.display().to_string(),
        message: e.to_string(),
    })
}

/// The SVG document for `timeline`.
pub fn render(title: &str, timeline: &[Second]) -> Result<String, String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (960, 640)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let root = root
            .titled(title, ("sans-serif", 18))
            .map_err(|e| e.to_string())?;
        let (top, bottom) = root.split_vertically(300);
        let end = timeline.last().map_or(1, |s| s.t.max(1));

        let rate_max = timeline
            .iter()
            .map(|s| s.requested.max(s.ended))
            .max()
            .unwrap_or(0)
            .max(1) as f64
            * 1.1;
        let mut rates = ChartBuilder::on(&top)
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(60)
            .build_cartesian_2d(0u64..end, 0f64..rate_max)
            .map_err(|e| e.to_string())?;
        rates
            .configure_mesh()
            .x_desc("seconds")
            .y_desc("calls per second")
            .draw()
            .map_err(|e| e.to_string())?;
        let series: [RateLine; 2] = [
            ("asked for", BLUE, |s| s.requested as f64),
            ("ended", GREEN, |s| s.ended as f64),
        ];
        for (label, color, value) in series {
            rates
                .draw_series(LineSeries::new(
                    timeline.iter().map(|s| (s.t, value(s))),
                    color.stroke_width(2),
                ))
                .map_err(|e| e.to_string())?
                .label(label)
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color));
        }
        rates
            .configure_series_labels()
            .border_style(BLACK)
            .background_style(WHITE.mix(0.8))
            .draw()
            .map_err(|e| e.to_string())?;

        let latency_max = timeline
            .iter()
            .filter_map(|s| s.setup_p99_ms)
            .fold(1.0, f64::max)
            * 1.1;
        let mut latency = ChartBuilder::on(&bottom)
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(60)
            .build_cartesian_2d(0u64..end, 0f64..latency_max)
            .map_err(|e| e.to_string())?;
        latency
            .configure_mesh()
            .x_desc("seconds")
            .y_desc("request -> INVITE, ms")
            .draw()
            .map_err(|e| e.to_string())?;
        let series: [LatencyLine; 2] = [
            ("p50", BLUE, |s| s.setup_p50_ms),
            ("p99", RED, |s| s.setup_p99_ms),
        ];
        for (label, color, value) in series {
            latency
                .draw_series(LineSeries::new(
                    timeline.iter().filter_map(|s| Some((s.t, value(s)?))),
                    color.stroke_width(2),
                ))
                .map_err(|e| e.to_string())?
                .label(label)
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color));
        }
        latency
            .configure_series_labels()
            .border_style(BLACK)
            .background_style(WHITE.mix(0.8))
            .draw()
            .map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_svg_has_both_panels_and_a_line_per_series() {
        let timeline: Vec<Second> = (1..=5)
            .map(|t| Second {
                t,
                requested: 10,
                ended: t * 2,
                errors: 0,
                in_flight: 3,
                setup_p50_ms: Some(4.0),
                setup_p99_ms: (t > 1).then_some(9.0),
            })
            .collect();
        let svg = render("load", &timeline).expect("render");
        assert!(svg.starts_with("<svg"), "{}", &svg[..80.min(svg.len())]);
        assert!(svg.contains("calls per second") && svg.contains("request -&gt; INVITE"));
        for label in ["asked for", "ended", "p50", "p99"] {
            assert!(
                svg.contains(&format!("\n{label}\n</text>")),
                "legend {label} missing"
            );
        }
        assert!(svg.trim_end().ends_with("</svg>"));
        assert!(render("empty", &[]).is_ok());
    }
}
