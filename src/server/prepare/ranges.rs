//! OpenAI parameter ranges, checked before anything goes upstream, with the messages and `param` names the official
//! API uses. An upstream that does not check (Ollama accepts `max_tokens: -5`) would otherwise answer 200.

use serde_json::{Map, Value};

use crate::error::ApiError;

/// Numeric parameters and their inclusive ranges.
const RANGES: [(&str, f64, f64); 5] = [
    ("temperature", 0.0, 2.0),
    ("top_p", 0.0, 1.0),
    ("presence_penalty", -2.0, 2.0),
    ("frequency_penalty", -2.0, 2.0),
    ("top_logprobs", 0.0, 20.0),
];

/// Integer parameters that must be at least 1.
const POSITIVE: [&str; 3] = ["max_tokens", "max_completion_tokens", "n"];

/// Most `stop` sequences OpenAI accepts.
const MAX_STOP: usize = 4;

/// Checks the OpenAI parameters of a request body (absent and `null` parameters are fine).
pub fn check(body: &Map<String, Value>) -> Result<(), ApiError> {
    let present = |name: &str| body.get(name).filter(|v| !v.is_null());
    for (name, lo, hi) in RANGES {
        if let Some(v) = present(name) {
            let integer = name == "top_logprobs";
            let ok = if integer { v.as_i64().map(|i| i as f64) } else { v.as_f64() };
            match ok {
                Some(x) if (lo..=hi).contains(&x) => {}
                _ => {
                    let kind = if integer { "an integer" } else { "a number" };
                    return Err(invalid(name, format!("`{name}` must be {kind} from {lo} to {hi} (got {v})")));
                }
            }
        }
    }
    for name in POSITIVE {
        if let Some(v) = present(name) {
            match v.as_i64() {
                Some(x) if x >= 1 => {}
                _ => return Err(invalid(name, format!("`{name}` must be an integer of at least 1 (got {v})"))),
            }
        }
    }
    if let Some(v) = present("seed")
        && v.as_i64().is_none()
    {
        return Err(invalid("seed", format!("`seed` must be an integer (got {v})")));
    }
    match present("stop") {
        None | Some(Value::String(_)) => {}
        Some(Value::Array(items)) if items.len() <= MAX_STOP && items.iter().all(Value::is_string) => {}
        Some(v) => {
            return Err(invalid(
                "stop",
                format!("`stop` must be a string or an array of at most {MAX_STOP} strings (got {v})"),
            ));
        }
    }
    Ok(())
}

fn invalid(param: &str, message: String) -> ApiError {
    ApiError::InvalidRequest { message, param: Some(param.to_owned()), code: Some("invalid_value") }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn param_of(v: Value) -> Option<String> {
        match check(v.as_object().unwrap_or(&Map::new())) {
            Ok(()) => None,
            Err(ApiError::InvalidRequest { param, .. }) => param,
            Err(other) => Some(format!("unexpected {other}")),
        }
    }

    #[test]
    fn in_range_values_pass() {
        let ok = json!({
            "temperature": 2, "top_p": 0.0, "presence_penalty": -2.0, "frequency_penalty": 1.5, "top_logprobs": 20,
            "max_tokens": 1, "max_completion_tokens": 4096, "n": 3, "seed": -7, "stop": ["a", "b", "c", "d"],
            "logprobs": true, "user": "x"
        });
        assert_eq!(param_of(ok), None);
        assert_eq!(param_of(json!({"stop": "###", "max_tokens": null, "seed": null})), None);
    }

    #[test]
    fn each_out_of_range_value_names_its_parameter() {
        for (body, param) in [
            (json!({"max_tokens": -5}), "max_tokens"),
            (json!({"max_tokens": 0}), "max_tokens"),
            (json!({"max_tokens": 1.5}), "max_tokens"),
            (json!({"max_completion_tokens": 0}), "max_completion_tokens"),
            (json!({"temperature": 2.01}), "temperature"),
            (json!({"temperature": -0.1}), "temperature"),
            (json!({"top_p": 1.5}), "top_p"),
            (json!({"top_p": "high"}), "top_p"),
            (json!({"presence_penalty": -2.5}), "presence_penalty"),
            (json!({"frequency_penalty": 3}), "frequency_penalty"),
            (json!({"n": 0}), "n"),
            (json!({"n": -1}), "n"),
            (json!({"top_logprobs": 21}), "top_logprobs"),
            (json!({"top_logprobs": -1}), "top_logprobs"),
            (json!({"top_logprobs": 2.5}), "top_logprobs"),
            (json!({"seed": 1.5}), "seed"),
            (json!({"seed": "42"}), "seed"),
            (json!({"stop": ["a", "b", "c", "d", "e"]}), "stop"),
            (json!({"stop": [1]}), "stop"),
            (json!({"stop": 7}), "stop"),
        ] {
            assert_eq!(param_of(body.clone()).as_deref(), Some(param), "{body}");
        }
    }
}
