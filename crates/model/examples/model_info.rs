//! Sizes of every preset: `cargo run -p albatross-model --example model_info [-- PRESET]`.
//! What `albatross model info --preset NAME --json` prints is `ModelInfo::new(..).to_json()`.

use std::io::Write;

use albatross_model::{AlbertConfig, ModelInfo, PRESETS};

fn main() -> anyhow::Result<()> {
    let chosen: Vec<String> = std::env::args().skip(1).collect();
    let mut out = std::io::stdout().lock();
    for preset in PRESETS.iter().filter(|p| chosen.is_empty() || chosen.iter().any(|c| c == *p)) {
        let info = ModelInfo::new(&AlbertConfig::preset(preset)?);
        if chosen.is_empty() {
            writeln!(
                out,
                "{preset:8} params {:>11} grad bytes {:>11} | BERT same H/L/FF: params {:>11} \
                 grad bytes {:>12} | saving {:.1}x",
                info.parameters,
                info.gradient_bytes,
                info.bert_equivalent_parameters,
                info.bert_equivalent_gradient_bytes,
                info.communication_saving
            )?;
        } else {
            writeln!(out, "{}", info.to_json())?;
        }
    }
    Ok(())
}
