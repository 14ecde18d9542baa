//! The report as a page people look at (`--report FILE.html`): one chart
//! per route (the rate achieved over time against the pace in force, 429s,
//! retries and holds marked), drawn as SVG by plotters, and the summary's
//! tables below, made from the same JSON `--report FILE.json` writes, so
//! the numbers are the same. One self-contained file: no script, no fetch.

use std::fmt::Write as _;
use std::time::Duration;

use plotters::prelude::*;
use serde_json::Value;

use super::timeline::{Bin, Series};

/// The chart's size in pixels.
const CHART: (u32, u32) = (900, 300);
/// Bins drawn per chart, about (stored bins are merged to this).
const DRAWN_BINS: f64 = 80.0;
/// The narrowest drawn bin: narrower, a few requests per bin are noise.
const MIN_DRAWN: Duration = Duration::from_millis(100);

const ACHIEVED: RGBColor = RGBColor(31, 100, 180);
const PACE: RGBColor = RGBColor(30, 140, 60);
const THROTTLED: RGBColor = RGBColor(210, 30, 30);
const RETRIED: RGBColor = RGBColor(230, 130, 0);
const HELD: RGBColor = RGBColor(255, 190, 110);

/// The page of `report` (the JSON report, as a value): a heading, one
/// chart per route, the summary's tables.
pub(crate) fn page(report: &Value, series: &Series) -> Result<String, String> {
    let text = |key: &str| escape(report[key].as_str().unwrap_or_default());
    let number = |key: &str| report[key].as_f64().unwrap_or_default();
    let mut html = String::new();
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>together-batch report: {}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n\
         <h1>together-batch report</h1>\n<p class=\"lead\">{} lines from <code>{}</code> to \
         <code>{}</code>: {} ok, {} failed, {} unanswered, in {:.1} s; {} 429s, {} retries. \
         Limits: {}.</p>\n",
        text("input"),
        number("lines"),
        text("input"),
        text("output"),
        number("ok"),
        number("failed"),
        number("unanswered"),
        number("wall_secs"),
        number("responses_429"),
        number("retries"),
        text("limits_from"),
    );
    let wall = Duration::from_secs_f64(number("wall_secs").max(0.0));
    for (route, bins) in &series.routes {
        let _ = write!(
            html,
            "<section class=\"route\" data-route=\"{}\">\n<h2>{}</h2>\n",
            escape(route),
            escape(route)
        );
        html.push_str(&chart(bins, series.width, wall)?);
        html.push_str("\n</section>\n");
    }
    html.push_str("<h2>Summary</h2>\n");
    html.push_str(&tables(report));
    html.push_str("</body>\n</html>\n");
    Ok(html)
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1100px}\
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:1.6em}\
.lead{font-size:1.05em}code{font-size:.95em}\
table{border-collapse:collapse;margin:.6em 0 1.4em}\
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left}\
td.n{text-align:right;font-variant-numeric:tabular-nums}th{background:#f3f3f3}\
svg{display:block;max-width:100%;height:auto}";

/// One drawn bin: its start and end in seconds, and what it holds.
struct Drawn {
    from: f64,
    to: f64,
    bin: Bin,
}

/// The stored bins merged to about [`DRAWN_BINS`] over the run.
fn drawn(bins: &[Bin], width: Duration, wall: Duration) -> Vec<Drawn> {
    let target = (wall.as_secs_f64() / DRAWN_BINS).max(MIN_DRAWN.as_secs_f64());
    let per = (target / width.as_secs_f64()).ceil().max(1.0) as usize;
    let step = width.as_secs_f64() * per as f64;
    let end = wall.as_secs_f64();
    bins.chunks(per)
        .enumerate()
        // Nothing after the run (the first bin even for a run of no time).
        .take_while(|(i, _)| *i == 0 || (*i as f64) * step < end)
        .map(|(i, chunk)| {
            let bin = chunk.iter().fold(Bin::empty(), |acc, b| acc.merge(*b));
            let from = i as f64 * step;
            // The last bin ends with the run, not a full step later.
            let to = (from + step).min(end.max(from + width.as_secs_f64()));
            Drawn { from, to, bin }
        })
        .collect()
}

/// One route's chart, as an SVG element.
fn chart(bins: &[Bin], width: Duration, wall: Duration) -> Result<String, String> {
    let drawn = drawn(bins, width, wall);
    let rate = |d: &Drawn| f64::from(d.bin.sent) / (d.to - d.from).max(1e-9);
    let x_max = wall.as_secs_f64().max(0.1);
    let top = drawn
        .iter()
        .flat_map(|d| [rate(d), if d.bin.pace.is_nan() { 0.0 } else { d.bin.pace }])
        .fold(1.0, f64::max)
        * 1.25;
    let mut svg = String::new();
    draw(&mut svg, &drawn, x_max, top, rate).map_err(|e| format!("cannot draw a chart: {e}"))?;
    Ok(svg)
}

type Drawing = Result<(), Box<dyn std::error::Error>>;

fn draw(
    svg: &mut String,
    drawn: &[Drawn],
    x_max: f64,
    top: f64,
    rate: impl Fn(&Drawn) -> f64,
) -> Drawing {
    let root = SVGBackend::with_string(svg, CHART).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(56)
        .build_cartesian_2d(0f64..x_max, 0f64..top)?;
    chart
        .configure_mesh()
        .x_desc("seconds from the start")
        .y_desc("requests per second")
        .light_line_style(RGBColor(238, 238, 238))
        .draw()?;

    let held: Vec<&Drawn> = drawn.iter().filter(|d| d.bin.held).collect();
    if !held.is_empty() {
        chart
            .draw_series(
                held.iter()
                    .map(|d| Rectangle::new([(d.from, 0.0), (d.to, top)], HELD.mix(0.45).filled())),
            )?
            .label("held by the server")
            .legend(|(x, y)| {
                Rectangle::new([(x, y - 5), (x + 16, y + 5)], HELD.mix(0.45).filled())
            });
    }

    let steps = drawn
        .iter()
        .flat_map(|d| [(d.from, rate(d)), (d.to, rate(d))]);
    chart
        .draw_series(LineSeries::new(steps, ACHIEVED.stroke_width(2)))?
        .label("sent (attempts per second)")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], ACHIEVED.stroke_width(2)));

    let mut labelled = false;
    for run in drawn
        .split(|d| d.bin.pace.is_nan())
        .filter(|r| !r.is_empty())
    {
        let points = run
            .iter()
            .flat_map(|d| [(d.from, d.bin.pace), (d.to, d.bin.pace)]);
        let series =
            chart.draw_series(DashedLineSeries::new(points, 6, 4, PACE.stroke_width(2)))?;
        if !labelled {
            labelled = true;
            series
                .label("pace in force")
                .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], PACE.stroke_width(2)));
        }
    }

    let mark = |d: &Drawn| (d.from + d.to) / 2.0;
    let throttled: Vec<&Drawn> = drawn.iter().filter(|d| d.bin.throttled > 0).collect();
    if !throttled.is_empty() {
        chart
            .draw_series(
                throttled
                    .iter()
                    .map(|d| TriangleMarker::new((mark(d), top * 0.95), 5, THROTTLED.filled())),
            )?
            .label("429 answers")
            .legend(|(x, y)| TriangleMarker::new((x + 8, y), 5, THROTTLED.filled()));
    }
    let retried: Vec<&Drawn> = drawn.iter().filter(|d| d.bin.retries > 0).collect();
    if !retried.is_empty() {
        chart
            .draw_series(
                retried
                    .iter()
                    .map(|d| Cross::new((mark(d), top * 0.88), 4, RETRIED.stroke_width(2))),
            )?
            .label("retries sent")
            .legend(|(x, y)| Cross::new((x + 8, y), 4, RETRIED.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(180, 180, 180))
        .draw()?;
    root.present()?;
    Ok(())
}

/// The summary's tables, from the JSON report: its scalars as one table,
/// then each list of records (routes, models, failures) as a table.
fn tables(json: &Value) -> String {
    let Value::Object(fields) = json else {
        return String::new();
    };
    let mut html = String::from("<table class=\"summary\">\n");
    for key in ordered(fields.keys(), FIRST_FIELDS) {
        let value = &fields[key];
        if matches!(value, Value::Array(_)) {
            continue;
        }
        let _ = writeln!(
            html,
            "<tr><th>{}</th>{}</tr>",
            escape(&label(key)),
            cell(key, value)
        );
    }
    html.push_str("</table>\n");
    for (key, value) in fields {
        let Value::Array(rows) = value else { continue };
        let _ = writeln!(html, "<h3>{}</h3>", escape(&label(key)));
        if rows.is_empty() {
            html.push_str("<p>none</p>\n");
            continue;
        }
        let columns: Vec<&String> = match &rows[0] {
            Value::Object(first) => ordered(first.keys(), FIRST_COLUMNS),
            _ => Vec::new(),
        };
        let _ = write!(
            html,
            "<table class=\"list\" data-list=\"{}\">\n<tr>",
            escape(key)
        );
        for c in &columns {
            let _ = write!(html, "<th>{}</th>", escape(&label(c)));
        }
        html.push_str("</tr>\n");
        for row in rows {
            html.push_str("<tr>");
            match row {
                Value::Object(cells) => {
                    for c in &columns {
                        html.push_str(&cell(c, cells.get(*c).unwrap_or(&Value::Null)));
                    }
                }
                other => html.push_str(&cell(key, other)),
            }
            html.push_str("</tr>\n");
        }
        html.push_str("</table>\n");
    }
    html
}

/// The summary's fields shown first, in this order (the rest follow by name).
const FIRST_FIELDS: &[&str] = &[
    "input",
    "output",
    "preset",
    "limits_from",
    "lines",
    "skipped",
    "ok",
    "failed",
    "bad_input",
    "failed_earlier",
    "unanswered",
    "interrupted",
    "wall_secs",
    "ideal_secs",
    "ideal_pct",
    "responses_429",
    "retries",
    "statuses",
];
/// The columns shown first in the lists.
const FIRST_COLUMNS: &[&str] = &["route", "model", "status", "type", "count"];

/// `keys` with `first` (those present) in front, in its order.
fn ordered<'a>(keys: impl Iterator<Item = &'a String>, first: &[&str]) -> Vec<&'a String> {
    let mut keys: Vec<&String> = keys.collect();
    keys.sort_by_key(|k| first.iter().position(|f| f == k).unwrap_or(first.len()));
    keys
}

/// One value as a cell; numbers carry their exact JSON text in `data-value`.
fn cell(key: &str, value: &Value) -> String {
    let field = escape(key);
    match value {
        Value::Number(n) => {
            let shown = match (n.as_u64(), n.as_i64(), n.as_f64()) {
                (Some(u), _, _) => u.to_string(),
                (None, Some(i), _) => i.to_string(),
                (None, None, Some(f)) => shown_float(f),
                _ => n.to_string(),
            };
            format!("<td class=\"n\" data-field=\"{field}\" data-value=\"{n}\">{shown}</td>")
        }
        Value::Null => format!("<td data-field=\"{field}\">-</td>"),
        Value::String(s) => format!("<td data-field=\"{field}\">{}</td>", escape(s)),
        Value::Object(map) => {
            let parts: Vec<String> = map.iter().map(|(k, v)| format!("{k}: {v}")).collect();
            format!(
                "<td data-field=\"{field}\">{}</td>",
                escape(&parts.join(", "))
            )
        }
        other => format!(
            "<td data-field=\"{field}\">{}</td>",
            escape(&other.to_string())
        ),
    }
}

/// A float as the tables show it: at most three decimals.
pub(crate) fn shown_float(f: f64) -> String {
    let text = format!("{f:.3}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" {
        "0".to_owned()
    } else {
        text.to_owned()
    }
}

/// `achieved_per_sec` as a heading: `achieved per sec`.
fn label(key: &str) -> String {
    key.replace('_', " ")
}

/// Text safe in HTML content and attribute values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bin(sent: u32, pace: f64) -> Bin {
        Bin {
            sent,
            pace,
            ..Bin::default()
        }
    }

    #[test]
    fn a_chart_marks_429s_retries_and_holds() {
        let mut bins: Vec<Bin> = (0..200).map(|_| bin(1, 20.0)).collect();
        bins[50].throttled = 2;
        bins[51].retries = 1;
        bins[120].held = true;
        bins[150].pace = f64::NAN;
        let svg = chart(&bins, Duration::from_millis(50), Duration::from_secs(10)).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..60.min(svg.len())]);
        for label in [
            "429 answers",
            "retries sent",
            "held by the server",
            "pace in force",
        ] {
            assert!(svg.contains(label), "no {label:?}");
        }
        let quiet: Vec<Bin> = (0..20).map(|_| bin(1, f64::NAN)).collect();
        let svg = chart(&quiet, Duration::from_millis(50), Duration::from_secs(1)).unwrap();
        for label in [
            "429 answers",
            "retries sent",
            "held by the server",
            "pace in force",
        ] {
            assert!(!svg.contains(label), "{label:?} with nothing to mark");
        }
    }

    #[test]
    fn drawn_bins_add_up_to_the_stored_ones() {
        let bins: Vec<Bin> = (0..1000).map(|i| bin(i % 3, 5.0)).collect();
        let drawn = drawn(&bins, Duration::from_millis(50), Duration::from_secs(50));
        let sent: u32 = drawn.iter().map(|d| d.bin.sent).sum();
        assert_eq!(sent, bins.iter().map(|b| b.sent).sum::<u32>());
        assert!(drawn.len() <= DRAWN_BINS as usize + 1, "{}", drawn.len());
        assert!((drawn.last().unwrap().to - 50.0).abs() < 1e-9);
        // Bins past the run's end (a hold marked beyond it) are not drawn.
        let drawn = super::drawn(&bins, Duration::from_millis(50), Duration::from_secs(40));
        assert!((drawn.last().unwrap().to - 40.0).abs() < 1e-9);
        assert!(drawn.iter().all(|d| d.from < 40.0));
        let one = super::drawn(&bins[..3], Duration::from_millis(50), Duration::ZERO);
        assert_eq!(one.len(), 1);
        assert!(one[0].to > one[0].from);
    }

    #[test]
    fn text_is_escaped_and_floats_are_short() {
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(shown_float(12.345_678), "12.346");
        assert_eq!(shown_float(2.0), "2");
        assert_eq!(shown_float(-0.0001), "0");
        let json = serde_json::json!({"a_b": 1.5, "name": "<x>", "rows": [{"n": 3}]});
        let t = tables(&json);
        assert!(
            t.contains(
                "<th>a b</th><td class=\"n\" data-field=\"a_b\" data-value=\"1.5\">1.5</td>"
            ),
            "{t}"
        );
        assert!(t.contains("&lt;x&gt;"));
        assert!(t.contains("data-list=\"rows\""));
    }
}
