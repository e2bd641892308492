//! The reference pages under `docs/reference/`, generated from the code: every flag with its environment variable,
//! default and help (from clap), every request and response header and `bon` field, every metric with its type,
//! labels and help (from the registry), every error type. `tests/reference.rs` fails when a page differs from what
//! this writes (`BON_BLESS=1 cargo test --test reference` rewrites them).

use std::fmt::Write;

use clap::CommandFactory;

use crate::{config::Config, error::ApiError, metrics::Metrics, openai::BON_FIELDS, server::headers};

const GENERATED: &str =
    "<!-- Generated from the code by src/reference.rs; `BON_BLESS=1 cargo test --test reference` rewrites it. -->\n\n";

/// Every page: its path under `docs/reference/` and its text.
pub fn pages() -> Vec<(&'static str, String)> {
    vec![("flags.md", flags()), ("headers.md", headers()), ("metrics.md", metrics()), ("errors.md", errors())]
}

/// A table cell: one line, pipes escaped.
fn cell(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ").replace('|', "\\|")
}

fn flags() -> String {
    let mut out = format!("# Flags\n\n{GENERATED}");
    out.push_str(
        "Every flag has an environment variable; a flag given on the command line wins over its variable. \
         `bon-proxy --help` prints the same, grouped the same way.\n",
    );
    let mut commands = vec![("bon-proxy", Config::command())];
    #[cfg(feature = "eval")]
    commands.push(("bon-proxy eval", <crate::eval::EvalArgs as clap::Args>::augment_args(clap::Command::new("eval"))));
    for (name, command) in commands {
        let mut heading: Option<String> = None;
        let mut first = true;
        for arg in command.get_arguments().filter(|a| !a.is_hide_set() && a.get_long().is_some()) {
            let group = arg.get_help_heading().map(str::to_owned);
            if first || group != heading {
                let title =
                    group.clone().unwrap_or_else(|| if name == "bon-proxy" { "Server" } else { "Run" }.to_owned());
                let _ =
                    write!(out, "\n## `{name}`: {title}\n\n| flag | env | default | meaning |\n|---|---|---|---|\n");
                heading = group;
                first = false;
            }
            let long = arg.get_long().unwrap_or_default();
            if ["help", "version"].contains(&long) {
                continue;
            }
            let env = arg.get_env().map(|e| format!("`{}`", e.to_string_lossy())).unwrap_or_default();
            let defaults: Vec<String> =
                arg.get_default_values().iter().map(|v| format!("`{}`", v.to_string_lossy())).collect();
            let help = arg.get_long_help().or(arg.get_help()).map(ToString::to_string).unwrap_or_default();
            let _ = writeln!(out, "| `--{long}` | {env} | {} | {} |", defaults.join(", "), cell(&help));
        }
    }
    out
}

fn headers() -> String {
    let mut out = format!("# Headers and the `bon` object\n\n{GENERATED}");
    out.push_str("## Request headers\n\n| header | meaning |\n|---|---|\n");
    for (name, meaning) in headers::REQUEST_HEADERS {
        let _ = writeln!(out, "| `{name}` | {} |", cell(meaning));
    }
    out.push_str("\n## Response headers\n\n| header | meaning |\n|---|---|\n");
    for (name, meaning) in headers::RESPONSE_HEADERS {
        let _ = writeln!(out, "| `{name}` | {} |", cell(meaning));
    }
    out.push_str(
        "\n## The `bon` request object\n\nRead by the proxy and never forwarded; each field overrides its flag for \
         this request, a bad value is a 400 naming `bon.<field>`, and an unknown field is a 400 too.\n\n\
         | field | sets |\n|---|---|\n",
    );
    for (name, meaning) in BON_FIELDS {
        let _ = writeln!(out, "| `{name}` | {} |", cell(meaning));
    }
    out
}

fn metrics() -> String {
    let mut out = format!("# Metrics\n\n{GENERATED}");
    out.push_str(
        "`GET /metrics`, Prometheus text format, the proxy's own registry. Labels take values from closed sets only \
         (upstream names, never URLs).\n\n| metric | type | labels | help |\n|---|---|---|---|\n",
    );
    let Ok(metrics) = Metrics::new() else { return out };
    for m in metrics.catalogue() {
        let labels: Vec<String> = m.labels.iter().map(|l| format!("`{l}`")).collect();
        let _ = writeln!(out, "| `{}` | {} | {} | {} |", m.name, m.kind, labels.join(", "), cell(&m.help));
    }
    out
}

fn errors() -> String {
    let mut out = format!("# Errors\n\n{GENERATED}");
    out.push_str(
        "Every error is `{\"error\": {\"message\", \"type\", \"param\", \"code\"}}` with the status the official \
         OpenAI SDKs map to the right exception class (a Responses request gets the same shape). A streamed call \
         that fails after its first byte ends with an error event instead.\n\n\
         | status | `type` | when |\n|---|---|---|\n",
    );
    for e in ApiError::every_kind() {
        let status = match &e {
            ApiError::UpstreamRejected { .. } => "the upstream's 4xx".to_owned(),
            other => other.status_code().as_u16().to_string(),
        };
        let kind = match &e {
            ApiError::UpstreamRejected { .. } => "the upstream's, else `upstream_rejected`",
            other => other.kind(),
        };
        let _ = writeln!(out, "| {status} | `{kind}` | {} |", cell(e.when()));
    }
    out
}
