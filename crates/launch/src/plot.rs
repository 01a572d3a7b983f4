//! Training-loss charts as PNG files. A tiny software rasteriser with a built-in 5x7 bitmap font
//! keeps the launcher free of plotting, font and system-library dependencies: only `png` encodes.

use std::path::Path;

use anyhow::{Context, Result, bail};

/// One curve: (step, value) points, drawn in `rgb`.
#[derive(Debug, Clone, Copy)]
pub struct Series<'a> {
    pub name: &'a str,
    pub points: &'a [(u64, f64)],
    pub rgb: [u8; 3],
}

/// Renders a line chart of `series` (x = step, y = value) as a `width`×`height` RGB PNG at `path`.
pub fn write_line_chart_png(
    path: &Path,
    title: &str,
    series: &[Series<'_>],
    width: u32,
    height: u32,
) -> Result<()> {
    let labels = Labels { title, x_name: "step", y_name: "value" };
    write_chart(path, &labels, series, width, height)
}

/// Convenience for the launcher: loss per committed step, plus a moving average (window 20 or
/// len/10, whichever is smaller, at least 1) in a second colour; 900x500.
pub fn write_loss_png(path: &Path, points: &[(u64, f64)]) -> Result<()> {
    let window = (points.len() / 10).clamp(1, 20);
    let averaged = moving_average(points, window);
    let avg_name = format!("mean of {window}");
    let series = [
        Series { name: "loss", points, rgb: LOSS_RGB },
        Series { name: &avg_name, points: &averaged, rgb: AVERAGE_RGB },
    ];
    let labels = Labels { title: "training loss", x_name: "step", y_name: "loss" };
    write_chart(path, &labels, &series, 900, 500)
}

const WHITE: [u8; 3] = [255, 255, 255];
const BLACK: [u8; 3] = [0, 0, 0];
const GRID: [u8; 3] = [225, 225, 225];
const LOSS_RGB: [u8; 3] = [31, 119, 180];
const AVERAGE_RGB: [u8; 3] = [255, 127, 14];
/// Glyphs are 5x7 cells drawn at twice their size; one blank column separates characters.
const SCALE: i64 = 2;
const ADVANCE: i64 = 6 * SCALE;
const TEXT_HEIGHT: i64 = 7 * SCALE;
/// Margins leave room for the title and legend above, tick labels and axis names beside.
const MARGIN_LEFT: i64 = 104;
const MARGIN_RIGHT: i64 = 24;
const MARGIN_TOP: i64 = 60;
const MARGIN_BOTTOM: i64 = 64;
/// Data sits this far inside the frame so the 2-px brush at the extremes of the range is
/// neither clipped nor hidden under the axes.
const INSET: i64 = 2;

/// Text around the plot; only the launcher's loss chart names its y axis "loss".
struct Labels<'a> {
    title: &'a str,
    x_name: &'a str,
    y_name: &'a str,
}

fn write_chart(
    path: &Path,
    labels: &Labels<'_>,
    series: &[Series<'_>],
    width: u32,
    height: u32,
) -> Result<()> {
    if width == 0 || height == 0 {
        bail!("chart {} must have a positive size, got {width}x{height}", path.display());
    }
    let canvas = render(labels, series, width, height);
    let bytes =
        encode_png(&canvas).with_context(|| format!("encoding chart {}", path.display()))?;
    std::fs::write(path, bytes).with_context(|| format!("writing chart {}", path.display()))
}

/// Trailing mean over up to `window` points, ignoring non-finite values so one bad step does
/// not blank the average for a whole window.
fn moving_average(points: &[(u64, f64)], window: usize) -> Vec<(u64, f64)> {
    let window = window.max(1);
    (0..points.len())
        .map(|end| {
            let start = (end + 1).saturating_sub(window);
            let (sum, count) = points[start..=end]
                .iter()
                .map(|p| p.1)
                .filter(|v| v.is_finite())
                .fold((0.0, 0u32), |(sum, count), v| (sum + v, count + 1));
            let mean = if count == 0 { f64::NAN } else { sum / f64::from(count) };
            (points[end].0, mean)
        })
        .collect()
}

fn encode_png(canvas: &Canvas) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    let mut encoder = png::Encoder::new(&mut bytes, canvas.width, canvas.height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header()?;
    writer.write_image_data(&canvas.pixels)?;
    writer.finish()?;
    Ok(bytes)
}

fn render(labels: &Labels<'_>, series: &[Series<'_>], width: u32, height: u32) -> Canvas {
    let mut canvas = Canvas::new(width, height);
    let area = plot_area(width, height);
    let title_x = (i64::from(width) - text_width(labels.title)) / 2;
    canvas.text(title_x.max(0), 12, labels.title, BLACK);
    canvas.text(8, area.top - TEXT_HEIGHT - 14, labels.y_name, BLACK);
    let x_name_x = (area.left + area.right - text_width(labels.x_name)) / 2;
    canvas.text(x_name_x, area.bottom + 36, labels.x_name, BLACK);
    draw_legend(&mut canvas, series, &area);
    match data_ranges(series) {
        Some((x, y)) => {
            draw_grid(&mut canvas, &area, &x, &y);
            for s in series {
                draw_series(&mut canvas, &area, &x, &y, s);
            }
        }
        None => {
            let msg = "no data";
            let x = (area.left + area.right - text_width(msg)) / 2;
            canvas.text(x, (area.top + area.bottom - TEXT_HEIGHT) / 2, msg, BLACK);
        }
    }
    draw_axes(&mut canvas, &area);
    canvas
}

/// The plot rectangle; it keeps at least one pixel even on canvases smaller than the margins.
fn plot_area(width: u32, height: u32) -> Rect {
    let (w, h) = (i64::from(width), i64::from(height));
    let left = MARGIN_LEFT.min(w / 4);
    let top = MARGIN_TOP.min(h / 4);
    let right = (w - MARGIN_RIGHT).max(left + 1);
    let bottom = (h - MARGIN_BOTTOM).max(top + 1);
    Rect { left, top, right, bottom }
}

/// Half-open pixel rectangle: `left..right` by `top..bottom`.
#[derive(Debug, Clone, Copy)]
struct Rect {
    left: i64,
    top: i64,
    right: i64,
    bottom: i64,
}

impl Rect {
    fn sized(left: i64, top: i64, width: i64, height: i64) -> Self {
        Rect { left, top, right: left + width, bottom: top + height }
    }

    fn intersect(&self, other: &Rect) -> Rect {
        Rect {
            left: self.left.max(other.left),
            top: self.top.max(other.top),
            right: self.right.min(other.right),
            bottom: self.bottom.min(other.bottom),
        }
    }

    fn contains(&self, x: i64, y: i64) -> bool {
        (self.left..self.right).contains(&x) && (self.top..self.bottom).contains(&y)
    }
}

/// A data interval mapped onto pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Range {
    lo: f64,
    hi: f64,
}

impl Range {
    fn fraction(&self, v: f64) -> f64 {
        (v - self.lo) / (self.hi - self.lo)
    }
}

/// X from the first to the last finite step, Y from the finite values plus 5% padding; a flat
/// interval is widened so that the mapping never divides by zero. `None` when nothing is finite.
fn data_ranges(series: &[Series<'_>]) -> Option<(Range, Range)> {
    let finite = series.iter().flat_map(|s| s.points.iter()).filter(|p| p.1.is_finite());
    let (mut x, mut y) = (None::<Range>, None::<Range>);
    for &(step, value) in finite {
        let step = step as f64;
        x = Some(x.map_or(Range { lo: step, hi: step }, |r| widen(r, step)));
        y = Some(y.map_or(Range { lo: value, hi: value }, |r| widen(r, value)));
    }
    let (x, y) = (x?, y?);
    // Relative padding too: near u64::MAX, ±1 is lost to f64 rounding.
    let x_pad = 1f64.max(x.lo.abs() * 1e-9);
    let x = if x.hi > x.lo { x } else { Range { lo: x.lo - x_pad, hi: x.hi + x_pad } };
    let y = if y.hi > y.lo {
        let pad = 0.05 * (y.hi - y.lo);
        Range { lo: y.lo - pad, hi: y.hi + pad }
    } else {
        let pad = if y.lo == 0.0 { 1.0 } else { 0.1 * y.lo.abs() };
        Range { lo: y.lo - pad, hi: y.hi + pad }
    };
    Some((x, y))
}

fn widen(r: Range, v: f64) -> Range {
    Range { lo: r.lo.min(v), hi: r.hi.max(v) }
}

/// Step between ticks, rounded to 1, 2 or 5 times a power of ten so that labels read well and
/// about `target` of them span `span`.
fn nice_step(span: f64, target: usize) -> f64 {
    let raw = span / target.max(1) as f64;
    if !(raw.is_finite() && raw > 0.0) {
        return 1.0;
    }
    let magnitude = 10f64.powf(raw.log10().floor());
    let factor = match raw / magnitude {
        n if n <= 1.0 => 1.0,
        n if n <= 2.0 => 2.0,
        n if n <= 5.0 => 5.0,
        _ => 10.0,
    };
    factor * magnitude
}

/// Multiples of `step` inside `range`; capped so a degenerate step cannot loop for long, and
/// filtered because the float-to-int casts saturate on huge ranges.
fn ticks(range: &Range, step: f64) -> Vec<f64> {
    let first = (range.lo / step).ceil() as i64;
    let last = (range.hi / step).floor() as i64;
    (first..=last)
        .take(200)
        .map(|k| k as f64 * step)
        .filter(|v| (range.lo..=range.hi).contains(v))
        .collect()
}

/// Enough decimals to tell neighbouring ticks apart; exponent form for very large or tiny values.
fn format_tick(value: f64, step: f64) -> String {
    let value = value + 0.0; // turns -0.0 into 0.0 so the axis never reads "-0"
    if value.abs() >= 1e7 || step < 1e-4 {
        return format!("{value:.1e}");
    }
    let decimals = (-step.log10().floor()).max(0.0) as usize;
    format!("{value:.decimals$}")
}

fn draw_grid(canvas: &mut Canvas, area: &Rect, x: &Range, y: &Range) {
    let x_step = nice_step(x.hi - x.lo, ((area.right - area.left) / 120).max(2) as usize).max(1.0);
    for tick in ticks(x, x_step) {
        let px = x_pixel(area, x, tick);
        canvas.fill(Rect::sized(px, area.top, 1, area.bottom - area.top), GRID);
        canvas.fill(Rect::sized(px, area.bottom, 1, 5), BLACK);
        let label = format_tick(tick, x_step);
        canvas.text(px - text_width(&label) / 2, area.bottom + 10, &label, BLACK);
    }
    let y_step = nice_step(y.hi - y.lo, ((area.bottom - area.top) / 60).max(2) as usize);
    for tick in ticks(y, y_step) {
        let py = y_pixel(area, y, tick);
        canvas.fill(Rect::sized(area.left, py, area.right - area.left, 1), GRID);
        canvas.fill(Rect::sized(area.left - 5, py, 5, 1), BLACK);
        let label = format_tick(tick, y_step);
        canvas.text(area.left - 10 - text_width(&label), py - TEXT_HEIGHT / 2, &label, BLACK);
    }
}

fn draw_axes(canvas: &mut Canvas, area: &Rect) {
    let (l, t, r, b) = (area.left, area.top, area.right, area.bottom);
    canvas.fill(Rect { left: l - 1, top: t, right: l + 1, bottom: b + 1 }, BLACK);
    canvas.fill(Rect { left: l - 1, top: b - 1, right: r, bottom: b + 1 }, BLACK);
}

/// Entries right-aligned in the top margin, so they never hide a curve.
fn draw_legend(canvas: &mut Canvas, series: &[Series<'_>], area: &Rect) {
    let y = area.top - TEXT_HEIGHT - 14;
    let mut right = area.right;
    for s in series.iter().rev() {
        let left = right - text_width(s.name) - 30;
        canvas.fill(Rect::sized(left, y + 5, 20, 4), s.rgb);
        canvas.text(left + 26, y, s.name, s.rgb);
        right = left - 20;
    }
}

/// Consecutive finite points are joined; a non-finite value breaks the line.
/// A point with no finite neighbour gets a square marker, or it would be a barely visible dot.
fn draw_series(canvas: &mut Canvas, area: &Rect, x: &Range, y: &Range, s: &Series<'_>) {
    let mut previous = None;
    for (i, &(step, value)) in s.points.iter().enumerate() {
        if !value.is_finite() {
            previous = None;
            continue;
        }
        let here = (x_fraction_pixel(area, x, step as f64), y_fraction_pixel(area, y, value));
        if !(here.0.is_finite() && here.1.is_finite()) {
            previous = None; // an overflowing range; skip rather than draw garbage
            continue;
        }
        canvas.line(previous.unwrap_or(here), here, s.rgb, area);
        let next_is_finite = s.points.get(i + 1).is_some_and(|p| p.1.is_finite());
        if previous.is_none() && !next_is_finite {
            let (cx, cy) = (here.0.round() as i64, here.1.round() as i64);
            canvas.fill(Rect::sized(cx - 2, cy - 2, 6, 6).intersect(area), s.rgb);
        }
        previous = Some(here);
    }
}

fn x_fraction_pixel(area: &Rect, x: &Range, v: f64) -> f64 {
    let (lo, hi) = ((area.left + INSET) as f64, (area.right - 2 - INSET) as f64);
    lo + x.fraction(v) * (hi - lo)
}

fn y_fraction_pixel(area: &Rect, y: &Range, v: f64) -> f64 {
    let (lo, hi) = ((area.top + INSET) as f64, (area.bottom - 2 - INSET) as f64);
    hi - y.fraction(v) * (hi - lo)
}

fn x_pixel(area: &Rect, x: &Range, v: f64) -> i64 {
    x_fraction_pixel(area, x, v).round() as i64
}

fn y_pixel(area: &Rect, y: &Range, v: f64) -> i64 {
    y_fraction_pixel(area, y, v).round() as i64
}

/// An RGB8 image, row-major, in the layout the PNG encoder takes.
struct Canvas {
    width: u32,
    height: u32,
    pixels: Vec<u8>,
}

impl Canvas {
    fn new(width: u32, height: u32) -> Self {
        let len = width as usize * height as usize;
        Self { width, height, pixels: WHITE.repeat(len) }
    }

    /// Writes inside the image are kept, anything outside is dropped: every drawing routine
    /// relies on this instead of clipping itself.
    fn set(&mut self, x: i64, y: i64, rgb: [u8; 3]) {
        let (w, h) = (i64::from(self.width), i64::from(self.height));
        if (0..w).contains(&x) && (0..h).contains(&y) {
            let at = ((y * w + x) * 3) as usize;
            self.pixels[at..at + 3].copy_from_slice(&rgb);
        }
    }

    fn fill(&mut self, r: Rect, rgb: [u8; 3]) {
        for y in r.top.max(0)..r.bottom.min(i64::from(self.height)) {
            for x in r.left.max(0)..r.right.min(i64::from(self.width)) {
                self.set(x, y, rgb);
            }
        }
    }

    /// A 2-px-thick line by stepping one pixel at a time along the longer axis, kept inside
    /// `clip`. Data maps into the plot area, so capping the steps at its size loses nothing and
    /// bounds the work if a rounding slip ever puts a point far outside.
    fn line(&mut self, from: (f64, f64), to: (f64, f64), rgb: [u8; 3], clip: &Rect) {
        let (dx, dy) = (to.0 - from.0, to.1 - from.1);
        let most = 2 * (clip.right - clip.left + clip.bottom - clip.top);
        let steps = (dx.abs().max(dy.abs()).ceil().max(1.0) as i64).min(most.max(1));
        for i in 0..=steps {
            let t = i as f64 / steps as f64;
            let (x, y) = ((from.0 + t * dx).round() as i64, (from.1 + t * dy).round() as i64);
            let (x1, y1) = (x.saturating_add(1), y.saturating_add(1));
            for (bx, by) in [(x, y), (x1, y), (x, y1), (x1, y1)] {
                if clip.contains(bx, by) {
                    self.set(bx, by, rgb);
                }
            }
        }
    }

    /// `(x, y)` is the top-left corner of the first glyph.
    fn text(&mut self, x: i64, y: i64, text: &str, rgb: [u8; 3]) {
        for (i, c) in text.chars().enumerate() {
            let origin = x + i as i64 * ADVANCE;
            for (row, bits) in glyph(c).iter().enumerate() {
                for col in 0..5 {
                    if bits & (0x10 >> col) != 0 {
                        let (px, py) = (origin + col * SCALE, y + row as i64 * SCALE);
                        self.fill(Rect::sized(px, py, SCALE, SCALE), rgb);
                    }
                }
            }
        }
    }
}

fn text_width(text: &str) -> i64 {
    (text.chars().count() as i64 * ADVANCE - SCALE).max(0)
}

/// 5x7 glyphs, one byte per row, bit 4 the leftmost column. Letters are one case: small charts
/// need a readable label more than typography, and this halves the table.
fn glyph(c: char) -> [u8; 7] {
    match c.to_ascii_uppercase() {
        '0' => [0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E],
        '1' => [0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E],
        '2' => [0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F],
        '3' => [0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E],
        '4' => [0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02],
        '5' => [0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E],
        '6' => [0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E],
        '7' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08],
        '8' => [0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E],
        '9' => [0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C],
        'A' => [0x0E, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11],
        'B' => [0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E],
        'C' => [0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E],
        'D' => [0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C],
        'E' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F],
        'F' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10],
        'G' => [0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F],
        'H' => [0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11],
        'I' => [0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E],
        'J' => [0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C],
        'K' => [0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11],
        'L' => [0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F],
        'M' => [0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11],
        'N' => [0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11],
        'O' => [0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'P' => [0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10],
        'Q' => [0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D],
        'R' => [0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11],
        'S' => [0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E],
        'T' => [0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04],
        'U' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'V' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04],
        'W' => [0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A],
        'X' => [0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11],
        'Y' => [0x11, 0x11, 0x0A, 0x04, 0x04, 0x04, 0x04],
        'Z' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F],
        '.' => [0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x0C],
        '-' => [0x00, 0x00, 0x00, 0x1F, 0x00, 0x00, 0x00],
        '+' => [0x00, 0x04, 0x04, 0x1F, 0x04, 0x04, 0x00],
        ':' => [0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x0C, 0x00],
        '/' => [0x01, 0x01, 0x02, 0x04, 0x08, 0x10, 0x10],
        '(' => [0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02],
        ')' => [0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08],
        '_' => [0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x1F],
        '%' => [0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03],
        ' ' => [0x00; 7],
        _ => [0x00, 0x1F, 0x11, 0x11, 0x11, 0x1F, 0x00],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes a PNG written by this module into (width, height, RGB bytes).
    fn decode(path: &Path) -> Result<(u32, u32, Vec<u8>)> {
        let file = std::io::BufReader::new(std::fs::File::open(path)?);
        let mut reader = png::Decoder::new(file).read_info()?;
        let mut pixels = vec![0; reader.output_buffer_size().context("image too large")?];
        let info = reader.next_frame(&mut pixels)?;
        assert_eq!(info.color_type, png::ColorType::Rgb);
        pixels.truncate(info.buffer_size());
        Ok((info.width, info.height, pixels))
    }

    /// Pixels of exactly `rgb` inside `area`.
    fn count_in(pixels: &[u8], width: u32, area: &Rect, rgb: [u8; 3]) -> usize {
        pixels
            .chunks_exact(3)
            .enumerate()
            .filter(|(i, px)| {
                let (x, y) = ((*i as u32 % width) as i64, (*i as u32 / width) as i64);
                area.contains(x, y) && *px == rgb
            })
            .count()
    }

    /// A decreasing curve with deterministic noise from a small LCG.
    fn noisy_decreasing(n: u64) -> Vec<(u64, f64)> {
        let mut state = 12345u64;
        (0..n)
            .map(|step| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let noise = (state >> 33) as f64 / (1u64 << 31) as f64 - 0.5;
                (step, 4.0 * (-(step as f64) / 150.0).exp() + 1.0 + 0.3 * noise)
            })
            .collect()
    }

    #[test]
    fn nice_step_rounds_to_one_two_or_five() {
        let cases = [(10.0, 5, 2.0), (1.0, 5, 0.2), (0.37, 5, 0.1), (1000.0, 4, 500.0)];
        for (span, target, expected) in cases {
            let step = nice_step(span, target);
            assert!((step - expected).abs() < 1e-12 * expected, "{span}/{target}: {step}");
        }
        assert_eq!(nice_step(0.0, 5), 1.0);
        assert_eq!(nice_step(f64::NAN, 5), 1.0);
    }

    #[test]
    fn ticks_lie_inside_the_range_on_multiples_of_the_step() {
        let got = ticks(&Range { lo: -0.05, hi: 1.05 }, 0.2);
        let want = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0];
        assert_eq!(got.len(), want.len());
        assert!(got.iter().zip(want).all(|(g, w)| (g - w).abs() < 1e-12), "{got:?}");
        assert_eq!(format_tick(-0.0, 0.2), "0.0");
        assert_eq!(format_tick(0.6000000000000001, 0.2), "0.6");
        assert_eq!(format_tick(1500.0, 500.0), "1500");
    }

    #[test]
    fn loss_chart_has_its_size_and_both_series_in_the_plot_area() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("loss.png");
        write_loss_png(&path, &noisy_decreasing(600))?;
        let (width, height, pixels) = decode(&path)?;
        assert_eq!((width, height), (900, 500));
        let area = plot_area(width, height);
        assert!(count_in(&pixels, width, &area, LOSS_RGB) > 500);
        assert!(count_in(&pixels, width, &area, AVERAGE_RGB) > 500);
        assert!(count_in(&pixels, width, &area, GRID) > 100, "grid lines are drawn");
        Ok(())
    }

    #[test]
    fn empty_nan_flat_and_single_point_inputs_give_valid_pngs() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let nan = [(0, f64::NAN), (1, f64::INFINITY)];
        let flat = [(3, 2.5), (4, 2.5), (5, f64::NAN), (6, 2.5)];
        let one = [(7, 0.0)];
        let inputs: [&[(u64, f64)]; 5] = [&[], &nan, &flat, &one, &[(u64::MAX, -1e300)]];
        for (i, points) in inputs.into_iter().enumerate() {
            let path = dir.path().join(format!("{i}.png"));
            write_loss_png(&path, points)?;
            let (width, height, pixels) = decode(&path)?;
            assert_eq!((width, height), (900, 500));
            let area = plot_area(width, height);
            assert!(pixels.chunks_exact(3).any(|px| px == BLACK), "input {i} has text and axes");
            // A flat average lies exactly on the loss line, so count either colour.
            let series_px = count_in(&pixels, width, &area, LOSS_RGB)
                + count_in(&pixels, width, &area, AVERAGE_RGB);
            assert_eq!(series_px > 0, i >= 2, "input {i} draws only finite points");
        }
        let path = dir.path().join("none.png");
        write_line_chart_png(&path, "empty", &[], 320, 200)?;
        assert_eq!(decode(&path)?.0, 320);
        Ok(())
    }

    #[test]
    fn tiny_canvases_render_and_a_zero_size_is_an_error() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let points = noisy_decreasing(50);
        let series = [Series { name: "x", points: &points, rgb: [200, 0, 0] }];
        for (w, h) in [(1, 1), (7, 3), (40, 30)] {
            let path = dir.path().join(format!("{w}x{h}.png"));
            write_line_chart_png(&path, "tiny", &series, w, h)?;
            assert_eq!(decode(&path)?.0, w);
        }
        let err = write_line_chart_png(&dir.path().join("zero.png"), "t", &series, 0, 10);
        assert!(format!("{:#}", err.err().context("zero size accepted")?).contains("zero.png"));
        Ok(())
    }

    #[test]
    fn write_errors_name_the_path() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("missing").join("loss.png");
        let err = write_loss_png(&path, &noisy_decreasing(10)).err().context("write succeeded")?;
        assert!(format!("{err:#}").contains(&path.display().to_string()), "{err:#}");
        Ok(())
    }

    #[test]
    fn moving_average_skips_non_finite_values() {
        let points = [(0, 1.0), (1, 3.0), (2, f64::NAN), (3, 5.0)];
        let got: Vec<f64> = moving_average(&points, 2).iter().map(|p| p.1).collect();
        assert_eq!(got, [1.0, 2.0, 3.0, 5.0]);
    }
}
