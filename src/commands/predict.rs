//! `xgserve predict`: offline batch scoring of a CSV or JSON file.

use anyhow::Context;

use crate::bundle::Model;
use crate::cli::PredictArgs;
use crate::explain::Attribution;
use crate::input::{self, Limits};
use crate::pyfloat;

pub fn run(args: &PredictArgs) -> anyhow::Result<()> {
    let model = if args.features {
        Model::load_without_parity(&args.model)?
    } else {
        Model::load(&args.model)?
    };
    let source = args.input.display();
    let body = std::fs::read(&args.input).with_context(|| format!("{source}: cannot read"))?;
    let limits = Limits { max_rows: usize::MAX };
    let inputs = model.preprocessor.inputs();
    let is_csv = args.input.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    let batch = if is_csv {
        input::decode_csv(&body, inputs, limits)
    } else {
        input::decode_json(&body, inputs, limits)
    }
    .with_context(|| format!("{source}"))?;
    let mut text = if args.features {
        let features = model
            .preprocessor
            .transform(&batch)
            .with_context(|| format!("{source}"))?;
        let rows: Vec<String> = features
            .rows()
            .into_iter()
            .map(|row| pyfloat::float32_array(&row.to_vec()))
            .collect();
        format!("[{}]", rows.join(","))
    } else if args.explain {
        let explanation = model.explain(&batch).with_context(|| format!("{source}"))?;
        let by = Attribution::parse(&args.explain_by).expect("clap checked the value");
        let csv = match args.format.as_deref() {
            Some(format) => format == "csv",
            None => args
                .output
                .as_ref()
                .and_then(|path| path.extension())
                .is_some_and(|e| e.eq_ignore_ascii_case("csv")),
        };
        if csv {
            explanation.to_csv(&model, by)
        } else {
            explanation.to_json(&model, by)
        }
    } else {
        pyfloat::float32_array(&model.predict(&batch).with_context(|| format!("{source}"))?)
    };
    if !text.ends_with('\n') {
        text.push('\n');
    }
    match &args.output {
        Some(path) => std::fs::write(path, text).with_context(|| format!("{}: cannot write", path.display()))?,
        None => print!("{text}"),
    }
    Ok(())
}
