//! `duet plot`: draws a `--stats` file (one getStats-shaped JSON report per line) as one
//! figure with time on x and a panel per concern: bitrate sent, received and aimed at; round
//! trip and loss; the audio jitter buffer's mean wait and concealment; mouth-to-ear and
//! glass-to-glass latency; frame rate and freezes; picture height. SVG or PNG, by the output's
//! extension.
//!
//! Rates and ratios are worked out between consecutive reports from the cumulative counters,
//! as the W3C statistics intend; a figure a report does not have leaves a gap, not a zero.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use plotters::coord::Shift;
use plotters::prelude::*;
use serde_json::Value;

/// `duet plot`.
#[derive(Args, Debug, Clone)]
pub struct PlotArgs {
    /// A file written by `--stats` (one JSON report per line).
    pub stats: PathBuf,
    /// The figure to write: `.svg` or `.png`.
    #[arg(short, long)]
    pub output: PathBuf,
}

/// Width and height of the figure, pixels.
const SIZE: (u32, u32) = (1000, 1500);

/// Where a TrueType font for the labels is looked for.
const FONTS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
];

/// One report's figures, in plot units.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Point {
    /// Seconds since the first report.
    pub t: f64,
    /// Sent, received and target bitrate, kbit/s.
    pub sent_kbps: Option<f64>,
    /// Received bitrate, kbit/s.
    pub received_kbps: Option<f64>,
    /// The bitrate aimed at, kbit/s.
    pub target_kbps: Option<f64>,
    /// Round trip, ms.
    pub rtt_ms: Option<f64>,
    /// Packets of the peer's lost since the previous report, percent.
    pub loss_pct: Option<f64>,
    /// Mean jitter buffer wait of the samples emitted since the previous report, ms.
    pub jitter_buffer_ms: Option<f64>,
    /// Samples concealed since the previous report, percent.
    pub concealed_pct: Option<f64>,
    /// Mouth-to-ear latency of the audio heard, ms.
    pub audio_latency_ms: Option<f64>,
    /// Glass-to-glass latency of the pictures, ms.
    pub video_latency_ms: Option<f64>,
    /// Pictures decoded per second.
    pub fps: Option<f64>,
    /// Freezes so far.
    pub freezes: Option<f64>,
    /// Height of the pictures received, pixels.
    pub height: Option<f64>,
}

/// Reads a `--stats` file into points; lines that are not JSON objects are skipped and counted.
pub fn read(path: &Path) -> Result<(Vec<Point>, usize)> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the stats file {}", path.display()))?;
    let mut reports = Vec::new();
    let mut skipped = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        match serde_json::from_str::<Value>(line) {
            Ok(v) if v.is_object() => reports.push(v),
            _ => skipped += 1,
        }
    }
    Ok((points(&reports), skipped))
}

/// The objects of one report, by type (and kind, for RTP streams).
fn find<'a>(report: &'a Value, kind: &str, media: Option<&str>) -> Option<&'a Value> {
    report
        .as_object()?
        .values()
        .find(|o| o["type"] == kind && media.is_none_or(|m| o["kind"] == m))
}

fn num(report: &Value, kind: &str, media: Option<&str>, field: &str) -> Option<f64> {
    find(report, kind, media)?.get(field)?.as_f64()
}

/// Turns reports into points: rates from the differences of consecutive reports.
pub fn points(reports: &[Value]) -> Vec<Point> {
    let stamp = |r: &Value| {
        r.as_object()?
            .values()
            .find_map(|o| o.get("timestamp").and_then(Value::as_f64))
    };
    let Some(t0) = reports.first().and_then(stamp) else {
        return Vec::new();
    };
    let sum = |r: &Value, kind: &str, field: &str| -> Option<f64> {
        let values: Vec<f64> = r
            .as_object()?
            .values()
            .filter(|o| o["type"] == kind)
            .filter_map(|o| o.get(field).and_then(Value::as_f64))
            .collect();
        (!values.is_empty()).then(|| values.iter().sum())
    };
    let mut out = Vec::with_capacity(reports.len());
    for (i, r) in reports.iter().enumerate() {
        let Some(ts) = stamp(r) else { continue };
        let mut p = Point {
            t: (ts - t0) / 1000.0,
            target_kbps: num(r, "outbound-rtp", Some("video"), "targetBitrate").map(|b| b / 1000.0),
            rtt_ms: num(r, "candidate-pair", None, "currentRoundTripTime").map(|s| s * 1000.0),
            audio_latency_ms: num(r, "duet-latency", None, "audioLatency").map(|s| s * 1000.0),
            video_latency_ms: num(r, "duet-latency", None, "videoLatency").map(|s| s * 1000.0),
            freezes: num(r, "inbound-rtp", Some("video"), "freezeCount"),
            height: num(r, "inbound-rtp", Some("video"), "frameHeight"),
            ..Point::default()
        };
        if let Some(prev) = i.checked_sub(1).map(|j| &reports[j]) {
            let dt = stamp(prev).map(|t| (ts - t) / 1000.0).filter(|&d| d > 0.0);
            let delta = |a: Option<f64>, b: Option<f64>| Some(a? - b?);
            let d = |kind: &str, media: Option<&str>, field: &str| {
                delta(num(r, kind, media, field), num(prev, kind, media, field))
            };
            if let Some(dt) = dt {
                let kbps = |bytes: Option<f64>| bytes.map(|b| b * 8.0 / dt / 1000.0);
                p.sent_kbps = kbps(delta(
                    sum(r, "outbound-rtp", "bytesSent"),
                    sum(prev, "outbound-rtp", "bytesSent"),
                ));
                p.received_kbps = kbps(d("candidate-pair", None, "bytesReceived"));
                p.fps = d("inbound-rtp", Some("video"), "framesDecoded").map(|f| f / dt);
            }
            let lost = delta(
                sum(r, "inbound-rtp", "packetsLost"),
                sum(prev, "inbound-rtp", "packetsLost"),
            );
            let got = delta(
                sum(r, "inbound-rtp", "packetsReceived"),
                sum(prev, "inbound-rtp", "packetsReceived"),
            );
            p.loss_pct = match (lost, got) {
                (Some(l), Some(g)) if l + g > 0.0 => {
                    Some((l.max(0.0) * 100.0 / (l + g)).min(100.0))
                }
                _ => None,
            };
            let emitted = d("inbound-rtp", Some("audio"), "jitterBufferEmittedCount");
            let waited = d("inbound-rtp", Some("audio"), "jitterBufferDelay");
            p.jitter_buffer_ms = match (waited, emitted) {
                (Some(w), Some(e)) if e > 0.0 => Some(w * 1000.0 / e),
                _ => None,
            };
            let concealed = d("inbound-rtp", Some("audio"), "concealedSamples");
            let total = d("inbound-rtp", Some("audio"), "totalSamplesReceived");
            p.concealed_pct = match (concealed, total) {
                (Some(c), Some(n)) if n > 0.0 => Some(c * 100.0 / n),
                _ => None,
            };
        }
        out.push(p);
    }
    out
}

/// Runs `duet plot`.
pub fn run(args: PlotArgs) -> Result<()> {
    let (points, skipped) = read(&args.stats)?;
    if points.len() < 2 {
        bail!(
            "{}: {} report(s) with a timestamp; a plot needs at least two (one a second, from --stats)",
            args.stats.display(),
            points.len()
        );
    }
    if skipped > 0 {
        eprintln!("duet plot: skipped {skipped} line(s) that are not JSON reports");
    }
    register_font()?;
    let ext = args
        .output
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("svg") => {
            let root = SVGBackend::new(&args.output, SIZE).into_drawing_area();
            draw(&root, &points, &args.stats)?;
            root.present()
                .with_context(|| format!("writing {}", args.output.display()))?;
        }
        Some("png") => {
            let root = BitMapBackend::new(&args.output, SIZE).into_drawing_area();
            draw(&root, &points, &args.stats)?;
            root.present()
                .with_context(|| format!("writing {}", args.output.display()))?;
        }
        _ => bail!(
            "{}: give an output ending in .svg or .png",
            args.output.display()
        ),
    }
    println!("{}", args.output.display());
    Ok(())
}

fn register_font() -> Result<()> {
    for path in FONTS {
        if let Ok(bytes) = std::fs::read(path) {
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                return Ok(());
            }
        }
    }
    bail!(
        "no font for the labels: looked for {}; install fonts-dejavu-core (scripts/setup.sh does)",
        FONTS.join(", ")
    )
}

/// One line of a panel.
struct Line<'a> {
    label: &'a str,
    color: RGBColor,
    value: fn(&Point) -> Option<f64>,
}

const BLUE_: RGBColor = RGBColor(31, 119, 180);
const ORANGE: RGBColor = RGBColor(255, 127, 14);
const GREEN_: RGBColor = RGBColor(44, 160, 44);
const RED_: RGBColor = RGBColor(214, 39, 40);

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    points: &[Point],
    source: &Path,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(plot_error)?;
    let title = format!("duet call figures: {}", source.display());
    let root = root
        .titled(&title, ("sans-serif", 22))
        .map_err(plot_error)?;
    let panels = root.split_evenly((6, 1));
    let t_max = points.last().map_or(1.0, |p| p.t).max(1.0);
    let specs: [(&str, &str, Vec<Line>); 6] = [
        (
            "Bitrate",
            "kbit/s",
            vec![
                Line {
                    label: "sent",
                    color: BLUE_,
                    value: |p| p.sent_kbps,
                },
                Line {
                    label: "received",
                    color: GREEN_,
                    value: |p| p.received_kbps,
                },
                Line {
                    label: "target",
                    color: ORANGE,
                    value: |p| p.target_kbps,
                },
            ],
        ),
        (
            "Round trip and loss",
            "ms / %",
            vec![
                Line {
                    label: "RTT (ms)",
                    color: BLUE_,
                    value: |p| p.rtt_ms,
                },
                Line {
                    label: "loss received (%)",
                    color: RED_,
                    value: |p| p.loss_pct,
                },
            ],
        ),
        (
            "Audio jitter buffer",
            "ms / %",
            vec![
                Line {
                    label: "mean wait (ms)",
                    color: BLUE_,
                    value: |p| p.jitter_buffer_ms,
                },
                Line {
                    label: "concealed (%)",
                    color: RED_,
                    value: |p| p.concealed_pct,
                },
            ],
        ),
        (
            "Latency (measured)",
            "ms",
            vec![
                Line {
                    label: "audio mouth-to-ear (signal)",
                    color: BLUE_,
                    value: |p| p.audio_latency_ms,
                },
                Line {
                    label: "video glass-to-glass (stamps)",
                    color: ORANGE,
                    value: |p| p.video_latency_ms,
                },
            ],
        ),
        (
            "Video frames",
            "fps / count",
            vec![
                Line {
                    label: "frames decoded per second",
                    color: GREEN_,
                    value: |p| p.fps,
                },
                Line {
                    label: "freezes (total)",
                    color: RED_,
                    value: |p| p.freezes,
                },
            ],
        ),
        (
            "Resolution received",
            "height (px)",
            vec![Line {
                label: "picture height",
                color: BLUE_,
                value: |p| p.height,
            }],
        ),
    ];
    for (area, (name, unit, lines)) in panels.iter().zip(specs) {
        panel(area, points, t_max, name, unit, &lines)?;
    }
    Ok(())
}

fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    points: &[Point],
    t_max: f64,
    name: &str,
    unit: &str,
    lines: &[Line<'_>],
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let y_max = lines
        .iter()
        .flat_map(|l| points.iter().filter_map(l.value))
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max);
    let y_max = if y_max > 0.0 { y_max * 1.15 } else { 1.0 };
    let mut chart = ChartBuilder::on(area)
        .caption(name, ("sans-serif", 18))
        .margin(8)
        .x_label_area_size(36)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..t_max, 0.0..y_max)
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_desc("seconds")
        .y_desc(unit)
        .label_style(("sans-serif", 13))
        .light_line_style(TRANSPARENT)
        .draw()
        .map_err(plot_error)?;
    for line in lines {
        let color = line.color;
        let series: Vec<(f64, f64)> = points
            .iter()
            .filter_map(|p| (line.value)(p).filter(|v| v.is_finite()).map(|v| (p.t, v)))
            .collect();
        chart
            .draw_series(LineSeries::new(series, color.stroke_width(2)))
            .map_err(plot_error)?
            .label(line.label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font(("sans-serif", 13))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(plot_error)?;
    Ok(())
}

fn plot_error<E: std::error::Error + Send + Sync + 'static>(e: E) -> anyhow::Error {
    anyhow::anyhow!("drawing the plot: {e}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rates_come_from_consecutive_reports_and_missing_figures_stay_gaps() {
        let report = |t: f64, bytes: f64, emitted: f64, waited: f64, latency: Value| {
            json!({
                "OA": {"type": "outbound-rtp", "kind": "audio", "timestamp": t, "bytesSent": bytes},
                "IA": {"type": "inbound-rtp", "kind": "audio", "timestamp": t,
                       "packetsReceived": emitted / 960.0, "packetsLost": 0,
                       "jitterBufferEmittedCount": emitted, "jitterBufferDelay": waited,
                       "concealedSamples": 0, "totalSamplesReceived": emitted},
                "L": {"type": "duet-latency", "timestamp": t, "audioLatency": latency},
            })
        };
        let reports = [
            report(1_000.0, 0.0, 0.0, 0.0, Value::Null),
            report(2_000.0, 4_000.0, 48_000.0, 960.0, json!(0.034)),
        ];
        let p = points(&reports);
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].sent_kbps, None);
        assert_eq!(p[0].audio_latency_ms, None);
        assert_eq!(p[1].t, 1.0);
        assert_eq!(p[1].sent_kbps, Some(32.0));
        assert_eq!(p[1].jitter_buffer_ms, Some(20.0));
        assert_eq!(p[1].loss_pct, Some(0.0));
        assert_eq!(p[1].concealed_pct, Some(0.0));
        assert!((p[1].audio_latency_ms.unwrap() - 34.0).abs() < 1e-9);
        assert_eq!(p[1].fps, None);
    }
}
