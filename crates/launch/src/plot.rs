//! `loss.png`: the training loss and its moving average against the step, drawn with
//! `plotters` into an RGB buffer and written with `png`. Text uses a font bundled in the binary
//! (DejaVu Sans Mono, licence in `crates/launch/assets/DejaVu-LICENSE.txt`), so no system font
//! or library is needed.

use std::ops::Range;
use std::path::Path;
use std::sync::OnceLock;

use anyhow::{Context, Result, anyhow, bail};
use plotters::coord::Shift;
use plotters::prelude::*;

/// The font every chart's text is set in.
const FONT: &[u8] = include_bytes!("../assets/DejaVuSansMono.ttf");
/// The family name the font is registered under.
const FAMILY: &str = "sans-serif";

const LOSS_RGB: RGBColor = RGBColor(31, 119, 180);
const AVERAGE_RGB: RGBColor = RGBColor(255, 127, 14);
const GRID_RGB: RGBColor = RGBColor(225, 225, 225);

/// Below this size a chart has no room for its labels and draws its series alone.
const MIN_LABELLED: (u32, u32) = (240, 160);

/// One line of a chart.
#[derive(Debug, Clone, Copy)]
pub struct Series<'a> {
    pub name: &'a str,
    pub points: &'a [(u64, f64)],
    pub rgb: [u8; 3],
}

/// A line chart of `series` against the step, `width` x `height` pixels, as a PNG at `path`.
///
/// # Errors
/// A zero size, or a file that cannot be written (both name the path).
pub fn write_line_chart_png(
    path: &Path,
    title: &str,
    series: &[Series<'_>],
    width: u32,
    height: u32,
) -> Result<()> {
    let labels = Labels { title, y_name: "value" };
    write_chart(path, &labels, series, (width, height))
}

/// `loss.png`: the loss of every step and its moving mean (a tenth of the run, 1 to 20 steps).
///
/// # Errors
/// A file that cannot be written (the error names the path).
pub fn write_loss_png(path: &Path, points: &[(u64, f64)]) -> Result<()> {
    with_loss_series(points, |series| write_chart(path, &loss_labels(), series, LOSS_CHART_SIZE))
}

/// The loss chart's size in pixels.
const LOSS_CHART_SIZE: (u32, u32) = (900, 500);

fn loss_labels() -> Labels<'static> {
    Labels { title: "training loss", y_name: "loss" }
}

/// Calls `f` with the loss chart's series: the loss, and its moving mean over a tenth of the
/// run (1 to 20 steps).
fn with_loss_series<R>(points: &[(u64, f64)], f: impl FnOnce(&[Series<'_>]) -> R) -> R {
    let window = (points.len() / 10).clamp(1, 20);
    let averaged = moving_average(points, window);
    let average_name = format!("mean of {window}");
    let series = [
        Series { name: "loss", points, rgb: rgb_of(LOSS_RGB) },
        Series { name: &average_name, points: &averaged, rgb: rgb_of(AVERAGE_RGB) },
    ];
    f(&series)
}

struct Labels<'a> {
    title: &'a str,
    y_name: &'a str,
}

fn write_chart(
    path: &Path,
    labels: &Labels<'_>,
    series: &[Series<'_>],
    (width, height): (u32, u32),
) -> Result<()> {
    if width == 0 || height == 0 {
        bail!("chart {} must have a positive size, got {width}x{height}", path.display());
    }
    let (pixels, _) = render(labels, series, (width, height))
        .with_context(|| format!("drawing chart {}", path.display()))?;
    let bytes = encode_png(&pixels, width, height)
        .with_context(|| format!("encoding chart {}", path.display()))?;
    std::fs::write(path, bytes).with_context(|| format!("writing chart {}", path.display()))
}

/// The chart as RGB pixels, and the pixel ranges of its plotting area (`None` when the chart
/// has no data to scale an area to).
type Rendered = (Vec<u8>, Option<(Range<i32>, Range<i32>)>);

fn render(
    labels: &Labels<'_>,
    series: &[Series<'_>],
    (width, height): (u32, u32),
) -> Result<Rendered> {
    register_font()?;
    let mut pixels = vec![255_u8; width as usize * height as usize * 3];
    let area = {
        let root = BitMapBackend::with_buffer(&mut pixels, (width, height)).into_drawing_area();
        let area = match data_ranges(series) {
            Some((x, y)) if labelled(width, height) => {
                Some(draw_labelled(&root, labels, series, x, y)?)
            }
            Some((x, y)) => Some(draw_bare(&root, series, x, y)?),
            None if labelled(width, height) => {
                draw_empty(&root, labels)?;
                None
            }
            None => None,
        };
        root.present().map_err(drawing)?;
        area
    };
    Ok((pixels, area))
}

/// Whether a chart this size has room for its title, axes and legend.
fn labelled(width: u32, height: u32) -> bool {
    width >= MIN_LABELLED.0 && height >= MIN_LABELLED.1
}

/// Title, axes with ticks and names, grid, series and legend.
fn draw_labelled(
    root: &DrawingArea<BitMapBackend<'_>, Shift>,
    labels: &Labels<'_>,
    series: &[Series<'_>],
    x: Range<f64>,
    y: Range<f64>,
) -> Result<(Range<i32>, Range<i32>)> {
    let mut chart = ChartBuilder::on(root)
        .caption(labels.title, (FAMILY, 22))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(72)
        .build_cartesian_2d(x, y)
        .map_err(drawing)?;
    chart
        .configure_mesh()
        .light_line_style(GRID_RGB)
        .bold_line_style(GRID_RGB)
        .x_max_light_lines(2)
        .y_max_light_lines(2)
        .axis_style(BLACK)
        .x_desc("step")
        .y_desc(labels.y_name)
        .label_style((FAMILY, 14))
        .x_label_formatter(&|v| format!("{v:.0}"))
        .draw()
        .map_err(drawing)?;
    for s in series {
        let color = RGBColor(s.rgb[0], s.rgb[1], s.rgb[2]);
        chart
            .draw_series(LineSeries::new(finite(s.points), color))
            .map_err(drawing)?
            .label(s.name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE)
        .border_style(BLACK)
        .label_font((FAMILY, 14))
        .draw()
        .map_err(drawing)?;
    Ok(chart.plotting_area().get_pixel_range())
}

/// The series alone, filling a canvas too small for labels.
fn draw_bare(
    root: &DrawingArea<BitMapBackend<'_>, Shift>,
    series: &[Series<'_>],
    x: Range<f64>,
    y: Range<f64>,
) -> Result<(Range<i32>, Range<i32>)> {
    let mut chart = ChartBuilder::on(root).build_cartesian_2d(x, y).map_err(drawing)?;
    for s in series {
        let color = RGBColor(s.rgb[0], s.rgb[1], s.rgb[2]);
        chart.draw_series(LineSeries::new(finite(s.points), color)).map_err(drawing)?;
    }
    Ok(chart.plotting_area().get_pixel_range())
}

/// A chart with nothing to show says so.
fn draw_empty(root: &DrawingArea<BitMapBackend<'_>, Shift>, labels: &Labels<'_>) -> Result<()> {
    let (width, height) = root.dim_in_pixel();
    let (w, h) = (i32::try_from(width).unwrap_or(i32::MAX), i32::try_from(height).unwrap_or(0));
    root.draw(&Text::new(labels.title.to_owned(), (16, 12), (FAMILY, 22))).map_err(drawing)?;
    root.draw(&Rectangle::new([(16, 44), (w - 16, h - 16)], BLACK)).map_err(drawing)?;
    root.draw(&Text::new("no data", (w / 2 - 28, h / 2), (FAMILY, 14))).map_err(drawing)?;
    Ok(())
}

fn drawing<E: std::fmt::Debug>(err: E) -> anyhow::Error {
    anyhow!("{err:?}")
}

fn register_font() -> Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED
        .get_or_init(|| plotters::style::register_font(FAMILY, FontStyle::Normal, FONT).is_ok());
    if ok { Ok(()) } else { bail!("the bundled chart font does not load") }
}

fn rgb_of(color: RGBColor) -> [u8; 3] {
    [color.0, color.1, color.2]
}

/// The finite points of a series as chart coordinates.
fn finite(points: &[(u64, f64)]) -> Vec<(f64, f64)> {
    points.iter().filter(|p| p.1.is_finite()).map(|&(x, y)| (x as f64, y)).collect()
}

/// The x and y ranges covering every finite point, widened a little so that a line never lies
/// on the frame and a single value still gets a range; `None` without a finite point.
fn data_ranges(series: &[Series<'_>]) -> Option<(Range<f64>, Range<f64>)> {
    let points: Vec<(f64, f64)> = series.iter().flat_map(|s| finite(s.points)).collect();
    let (first, rest) = points.split_first()?;
    let (mut x, mut y) = ((first.0, first.0), (first.1, first.1));
    for &(px, py) in rest {
        x = (x.0.min(px), x.1.max(px));
        y = (y.0.min(py), y.1.max(py));
    }
    let widen = |(lo, hi): (f64, f64)| {
        let pad = if hi > lo { (hi - lo) * 0.05 } else { lo.abs().max(1.0) * 0.05 };
        (lo - pad)..(hi + pad)
    };
    Some((widen(x), widen(y)))
}

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

fn encode_png(pixels: &[u8], width: u32, height: u32) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    let mut encoder = png::Encoder::new(&mut bytes, width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header()?;
    writer.write_image_data(pixels)?;
    writer.finish()?;
    Ok(bytes)
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

    /// Pixels of `rgb` inside `area`, give or take the blending of anti-aliased lines.
    fn count_in(
        pixels: &[u8],
        width: u32,
        area: &(Range<i32>, Range<i32>),
        rgb: RGBColor,
    ) -> usize {
        pixels
            .chunks_exact(3)
            .enumerate()
            .filter(|(i, px)| {
                let (x, y) = ((*i as u32 % width) as i32, (*i as u32 / width) as i32);
                let near = px.iter().zip(rgb_of(rgb)).all(|(&a, b)| a.abs_diff(b) <= 48);
                area.0.contains(&x) && area.1.contains(&y) && near
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

    /// The loss chart's pixels and plotting area, as `write_loss_png` draws them.
    fn loss_chart(points: &[(u64, f64)]) -> Result<Rendered> {
        with_loss_series(points, |series| render(&loss_labels(), series, LOSS_CHART_SIZE))
    }

    #[test]
    fn loss_chart_has_its_size_and_both_series_in_the_plot_area() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("loss.png");
        let points = noisy_decreasing(600);
        write_loss_png(&path, &points)?;
        let (width, height, pixels) = decode(&path)?;
        assert_eq!((width, height), (900, 500));
        let (rendered, area) = loss_chart(&points)?;
        assert!(rendered == pixels, "the file holds the chart as rendered");
        let area = area.context("a plotting area")?;
        assert!(count_in(&pixels, width, &area, LOSS_RGB) > 500);
        assert!(count_in(&pixels, width, &area, AVERAGE_RGB) > 500);
        assert!(count_in(&pixels, width, &area, GRID_RGB) > 100, "grid lines are drawn");
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
            assert!(pixels.chunks_exact(3).any(|px| px == [0, 0, 0]), "input {i}: text, axes");
            let (_, area) = loss_chart(points)?;
            assert_eq!(area.is_some(), i >= 2, "input {i} scales only to finite points");
            if let Some(area) = area {
                // A flat average lies exactly on the loss line, so count either colour.
                let series_px = count_in(&pixels, width, &area, LOSS_RGB)
                    + count_in(&pixels, width, &area, AVERAGE_RGB);
                assert!(series_px > 0, "input {i} draws its finite points");
            }
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
