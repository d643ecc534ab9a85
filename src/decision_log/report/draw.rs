//! The report's drawing kit: an HTML page built section by section (every figure with a table of its
//! numbers for screen readers) and the inline-SVG plots plotters draws. Knows nothing of decisions.

use std::fmt::Write as _;

use plotters::prelude::*;

use super::ReportError;

pub(super) const PALETTE: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
];
const WIDTH: u32 = 720;
const HEIGHT: u32 = 300;

#[derive(Default)]
pub(super) struct Html {
    /// Markup so far: sections write headings and paragraphs they escaped themselves.
    pub(super) body: String,
    figures: usize,
}

pub(super) fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

impl Html {
    pub(super) fn section(&mut self, title: &str, text: &str) {
        let _ = writeln!(
            self.body,
            "<h2>{}</h2>\n<p>{}</p>",
            escape(title),
            escape(text)
        );
    }

    /// A plot with its caption and the same numbers as a table.
    pub(super) fn figure(&mut self, title: &str, svg: &str, header: &[&str], rows: &[Vec<String>]) {
        self.figures += 1;
        let id = format!("fig{}", self.figures);
        let _ = writeln!(
            self.body,
            "<figure id=\"{id}\">\n<figcaption id=\"{id}-cap\">{}</figcaption>\n<div class=\"plot\" role=\"img\" aria-labelledby=\"{id}-cap\">{svg}</div>",
            escape(title)
        );
        self.table(header, rows);
        self.body.push_str("</figure>\n");
    }

    pub(super) fn table(&mut self, header: &[&str], rows: &[Vec<String>]) {
        self.body.push_str("<table>\n<thead><tr>");
        for h in header {
            let _ = write!(self.body, "<th scope=\"col\">{}</th>", escape(h));
        }
        self.body.push_str("</tr></thead>\n<tbody>\n");
        for row in rows {
            self.body.push_str("<tr>");
            for (i, cell) in row.iter().enumerate() {
                let tag = if i == 0 { "th scope=\"row\"" } else { "td" };
                let close = if i == 0 { "th" } else { "td" };
                let _ = write!(self.body, "<{tag}>{}</{close}>", escape(cell));
            }
            self.body.push_str("</tr>\n");
        }
        self.body.push_str("</tbody></table>\n");
    }

    pub(super) fn finish(self) -> String {
        format!(
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n<title>handoff decision report</title>\n<style>\nbody{{font-family:sans-serif;max-width:1200px;margin:2em auto;color:#222}}\nfigure{{display:flex;flex-wrap:wrap;gap:1.5em;align-items:flex-start;margin:1.5em 0;border-top:1px solid #ddd;padding-top:1em}}\nfigcaption{{width:100%;font-weight:bold}}\ntable{{border-collapse:collapse;font-size:0.85em}}\nth,td{{border:1px solid #ccc;padding:2px 6px;text-align:right}}\nth[scope=row]{{text-align:left}}\n</style></head>\n<body>\n<h1>handoff decision report</h1>\n{}</body></html>\n",
            self.body
        )
    }
}

/// `ms` since the epoch as `YYYY-MM-DD HH:MM UTC` (days to civil date: Howard Hinnant's algorithm).
pub(super) fn utc(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}

pub(super) fn pct(x: f64) -> String {
    format!("{:.1} %", 100.0 * x)
}

/// Lines over a numeric x; `marker` draws a vertical line (today's threshold).
pub(super) fn line_chart(
    title: &str,
    x_desc: &str,
    y_desc: &str,
    series: &[(String, Vec<(f64, f64)>)],
    y_max: f64,
    marker: Option<f64>,
) -> Result<String, ReportError> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE)?;
        let xs = series.iter().flat_map(|(_, p)| p.iter().map(|(x, _)| *x));
        let (mut x0, mut x1) = xs.fold((f64::MAX, f64::MIN), |(a, b), x| (a.min(x), b.max(x)));
        if let Some(m) = marker {
            (x0, x1) = (x0.min(m), x1.max(m));
        }
        if x0 >= x1 {
            (x0, x1) = (x0.min(0.0), x0.max(0.0) + 1.0);
        }
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(55)
            .build_cartesian_2d(x0..x1, 0f64..y_max.max(1e-9) * 1.05)?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc(y_desc)
            .draw()?;
        for (i, (name, points)) in series.iter().enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            chart
                .draw_series(LineSeries::new(
                    points.iter().copied(),
                    color.stroke_width(2),
                ))?
                .label(name.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color));
            // Points too, so a series of one point (a log shorter than one bucket) still shows.
            chart.draw_series(points.iter().map(|p| Circle::new(*p, 3, color.filled())))?;
        }
        if let Some(m) = marker {
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(m, 0.0), (m, y_max * 1.05)],
                    BLACK.stroke_width(1),
                )))?
                .label("today's value")
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BLACK));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
        root.present()?;
    }
    Ok(svg)
}

/// Horizontal bars, one per named value, first on top.
pub(super) fn bar_chart(
    title: &str,
    x_desc: &str,
    items: &[(String, f64)],
) -> Result<String, ReportError> {
    let mut svg = String::new();
    {
        let n = items.len().max(1);
        let height = (60 + 26 * n as u32).max(160);
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE)?;
        let max = items.iter().map(|(_, v)| *v).fold(0.0, f64::max).max(1e-9);
        let labels: Vec<String> = items.iter().map(|(l, _)| l.clone()).collect();
        let label = move |y: &f64| {
            let i = y.round();
            if (y - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < n {
                labels.get(n - 1 - i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        };
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(150)
            .build_cartesian_2d(0f64..max * 1.1, -0.5f64..(n as f64 - 0.5))?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(n)
            .y_label_formatter(&label)
            .x_desc(x_desc)
            .draw()?;
        chart.draw_series(items.iter().enumerate().map(|(i, (_, v))| {
            let y = (n - 1 - i) as f64;
            Rectangle::new([(0.0, y - 0.35), (*v, y + 0.35)], PALETTE[0].filled())
        }))?;
        root.present()?;
    }
    Ok(svg)
}

/// How many of `values` fall in each of `bins` equal bins over [0, 1].
/// Bars over [0, 1], one per bin of `counts`.
pub(super) fn histogram(
    title: &str,
    x_desc: &str,
    counts: &[usize],
) -> Result<String, ReportError> {
    let bins = counts.len().max(1);
    let max = counts.iter().copied().max().unwrap_or(0).max(1) as f64;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(55)
            .build_cartesian_2d(0f64..1f64, 0f64..max * 1.05)?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc("decisions")
            .draw()?;
        let w = 1.0 / bins as f64;
        chart.draw_series(counts.iter().enumerate().map(|(i, c)| {
            let x = i as f64 * w;
            Rectangle::new([(x, 0.0), (x + w * 0.9, *c as f64)], PALETTE[0].filled())
        }))?;
        root.present()?;
    }
    Ok(svg)
}
