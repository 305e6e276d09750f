//! QR code images drawn by huixin itself, so a site can embed a binding code's image from its
//! own pages without reaching WeChat's image server (`GET /api/v1/bindings/{id}/qrcode.png`).

use qrcode::{Color, EcLevel, QrCode};

/// Pixels per module.
const SCALE: usize = 8;
/// The quiet zone around the code, in modules (the standard asks for 4).
const QUIET: usize = 4;

/// A grayscale PNG of the QR code of `content`; `None` when it is too long to encode.
pub fn png(content: &str) -> Option<Vec<u8>> {
    let code = QrCode::with_error_correction_level(content.as_bytes(), EcLevel::M).ok()?;
    let modules = code.width();
    let colors = code.to_colors();
    let side = (modules + 2 * QUIET) * SCALE;
    let mut pixels = vec![255u8; side * side];
    for (i, color) in colors.iter().enumerate() {
        if *color != Color::Dark {
            continue;
        }
        let (mx, my) = (i % modules + QUIET, i / modules + QUIET);
        for y in my * SCALE..(my + 1) * SCALE {
            pixels[y * side + mx * SCALE..y * side + (mx + 1) * SCALE].fill(0);
        }
    }
    let side = u32::try_from(side).ok()?;
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, side, side);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().ok()?;
    writer.write_image_data(&pixels).ok()?;
    writer.finish().ok()?;
    Some(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn draws_a_png() {
        let png = super::png("http://weixin.qq.com/q/02abc").expect("encodes");
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        assert!(super::png(&"x".repeat(8000)).is_none());
    }
}
