//! A Responses API request (`POST /v1/responses`) as the chat request Best-of-N runs, and what of it the Response
//! object echoes back.
//!
//! What maps: `input` (a string, or message items with text and image parts, `function_call` and
//! `function_call_output` items) and `instructions` (a system message first) become `messages`;
//! `max_output_tokens` → `max_tokens`; function `tools` and `tool_choice` → their chat form; `text.format`
//! (`json_object`, `json_schema`) → `response_format`; `include: ["message.output_text.logprobs"]` with
//! `top_logprobs` → `logprobs`; `temperature`, `top_p`, `seed`, `user`, `parallel_tool_calls` as they are; `bon` as
//! for chat. Accepted and only echoed: `store` (nothing is stored: echoed `false`), `metadata`, `truncation`,
//! `reasoning`, `service_tier`, `prompt_cache_key`, `safety_identifier`, `max_tool_calls`, `stream_options`.
//! A request that needs stored state (`previous_response_id`, `conversation`, `prompt`, `background: true`) is not
//! translated: the handler passes it to the upstream's own Responses API (`needs_upstream_state`), and with
//! `--passthrough off` it is refused here. Refused with a 400 naming the field, because the chat API has nothing
//! for them: `item_reference` items, file inputs, and tools other than functions (web search, file search, computer
//! use, MCP, ...). Any other field is forwarded to the upstream as chat forwards unknown fields.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::{
    error::ApiError,
    openai::{BonOptions, ChatRequest, Content, Message},
};

/// Most `input` items accepted (a conversation of a few thousand turns is far past any context window).
pub const MAX_INPUT_ITEMS: usize = 4096;

/// The include value that asks for the output text's log-probabilities.
const INCLUDE_LOGPROBS: &str = "message.output_text.logprobs";

/// `POST /v1/responses` body as the proxy reads it (and writes it back, less `bon`, when it passes it through).
#[derive(Debug, Deserialize, Serialize)]
pub struct ResponsesRequest {
    pub model: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instructions: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// Never forwarded.
    #[serde(default, skip_serializing)]
    pub bon: Option<BonOptions>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// What the Response object repeats from the request (as the API does).
#[derive(Clone, Debug, Default)]
pub struct Echo {
    pub instructions: Value,
    pub max_output_tokens: Value,
    pub metadata: Value,
    pub parallel_tool_calls: Value,
    pub reasoning: Value,
    pub temperature: Value,
    pub text: Value,
    pub tool_choice: Value,
    pub tools: Value,
    pub top_logprobs: Value,
    pub top_p: Value,
    pub truncation: Value,
    pub user: Value,
}

/// Fields only echoed (never forwarded).
const ECHOED_ONLY: [&str; 9] = [
    "store",
    "metadata",
    "truncation",
    "reasoning",
    "service_tier",
    "prompt_cache_key",
    "safety_identifier",
    "max_tool_calls",
    "stream_options",
];

/// The chat request for `req`, and what the Response echoes.
pub fn to_chat(req: ResponsesRequest) -> Result<(ChatRequest, Echo), ApiError> {
    let ResponsesRequest { model, input, instructions, stream, bon, mut extra } = req;
    refuse_stateful(&extra)?;
    if extra.get("n").is_some_and(|v| !v.is_null()) {
        return Err(ApiError::invalid(
            "`n` is not a Responses API parameter: a Response has one output; set the number of candidates with the \
             `x-bon-n` header or `bon.n`",
            "n".to_owned(),
        ));
    }
    let get = |extra: &Map<String, Value>, k: &str| extra.get(k).cloned().unwrap_or(Value::Null);
    let echo = Echo {
        instructions: instructions.clone().unwrap_or(Value::Null),
        max_output_tokens: get(&extra, "max_output_tokens"),
        metadata: extra.get("metadata").filter(|m| m.is_object()).cloned().unwrap_or_else(|| json!({})),
        parallel_tool_calls: extra.get("parallel_tool_calls").cloned().unwrap_or(json!(true)),
        reasoning: extra.get("reasoning").cloned().unwrap_or_else(|| json!({"effort": null, "summary": null})),
        temperature: get(&extra, "temperature"),
        text: extra.get("text").cloned().unwrap_or_else(|| json!({"format": {"type": "text"}})),
        tool_choice: extra.get("tool_choice").cloned().unwrap_or(json!("auto")),
        tools: extra.get("tools").cloned().unwrap_or_else(|| json!([])),
        top_logprobs: get(&extra, "top_logprobs"),
        top_p: get(&extra, "top_p"),
        truncation: extra.get("truncation").cloned().unwrap_or(json!("disabled")),
        user: get(&extra, "user"),
    };
    for k in ECHOED_ONLY {
        extra.remove(k);
    }

    let mut messages = Vec::new();
    match instructions {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => messages.push(message("system", Some(Content::Text(s)))),
        Some(_) => return Err(ApiError::invalid("`instructions` must be a string", "instructions".to_owned())),
    }
    messages.extend(input_messages(input)?);

    if let Some(v) = extra.remove("max_output_tokens").filter(|v| !v.is_null()) {
        extra.insert("max_tokens".into(), v);
    }
    if let Some(tools) = extra.remove("tools").filter(|v| !v.is_null()) {
        extra.insert("tools".into(), chat_tools(&tools)?);
    }
    if let Some(choice) = extra.remove("tool_choice").filter(|v| !v.is_null()) {
        extra.insert("tool_choice".into(), chat_tool_choice(choice)?);
    }
    if let Some(text) = extra.remove("text").filter(|v| !v.is_null())
        && let Some(format) = response_format(&text)?
    {
        extra.insert("response_format".into(), format);
    }
    let include = extra.remove("include").unwrap_or(Value::Null);
    let wants_logprobs = match &include {
        Value::Null => false,
        Value::Array(items) if items.iter().all(Value::is_string) => {
            items.iter().any(|i| i.as_str() == Some(INCLUDE_LOGPROBS))
        }
        _ => return Err(ApiError::invalid("`include` must be an array of strings", "include".to_owned())),
    };
    if wants_logprobs {
        extra.insert("logprobs".into(), json!(true));
    } else {
        // Chat sends no `top_logprobs` without `logprobs`; here it only counts with the include.
        extra.remove("top_logprobs");
    }
    Ok((ChatRequest { model, messages, stream, bon, extra }, echo))
}

/// Whether the request needs state only the upstream's own Responses API can have (a stored response or
/// conversation, a stored prompt, a background run): such a request is passed through, not translated.
pub fn needs_upstream_state(req: &ResponsesRequest) -> bool {
    let set = |field: &str| req.extra.get(field).is_some_and(|v| !v.is_null());
    ["previous_response_id", "conversation", "prompt"].into_iter().any(set)
        || req.extra.get("background").and_then(Value::as_bool) == Some(true)
}

/// 400 for what needs state the proxy does not keep (or tools only OpenAI runs).
fn refuse_stateful(extra: &Map<String, Value>) -> Result<(), ApiError> {
    for field in ["previous_response_id", "conversation", "prompt"] {
        if extra.get(field).is_some_and(|v| !v.is_null()) {
            return Err(unsupported(
                format!(
                    "`{field}` needs state stored by the Responses API, which bon-proxy does not keep (it runs each \
                     request as chat completions); send the whole conversation in `input`"
                ),
                field,
            ));
        }
    }
    if extra.get("background").and_then(Value::as_bool) == Some(true) {
        return Err(unsupported("`background: true` is not supported by bon-proxy".to_owned(), "background"));
    }
    Ok(())
}

fn unsupported(message: String, param: &str) -> ApiError {
    ApiError::InvalidRequest { message, param: Some(param.to_owned()), code: Some("unsupported_parameter") }
}

fn message(role: &str, content: Option<Content>) -> Message {
    Message { role: role.to_owned(), content, extra: Map::new() }
}

/// `input` as chat messages.
fn input_messages(input: Option<Value>) -> Result<Vec<Message>, ApiError> {
    let items = match input {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::String(s)) => return Ok(vec![message("user", Some(Content::Text(s)))]),
        Some(Value::Array(items)) => items,
        Some(_) => return Err(ApiError::invalid("`input` must be a string or an array of items", "input".to_owned())),
    };
    if items.len() > MAX_INPUT_ITEMS {
        return Err(ApiError::invalid(
            format!("`input` has {} items; at most {MAX_INPUT_ITEMS} are accepted", items.len()),
            "input".to_owned(),
        ));
    }
    let mut messages: Vec<Message> = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let param = format!("input[{i}]");
        let kind = item.get("type").and_then(Value::as_str).unwrap_or("message").to_owned();
        match kind.as_str() {
            "message" => messages.push(input_message(item, &param)?),
            "function_call" => {
                let call = json!({
                    "id": field_str(&item, "call_id", &param)?,
                    "type": "function",
                    "function": {"name": field_str(&item, "name", &param)?, "arguments": field_str(&item, "arguments", &param)?},
                });
                // Calls one after another are one assistant turn (parallel tool calls).
                match messages.last_mut() {
                    Some(m) if m.role == "assistant" && m.extra.contains_key("tool_calls") => {
                        if let Some(Value::Array(calls)) = m.extra.get_mut("tool_calls") {
                            calls.push(call);
                        }
                    }
                    _ => {
                        let mut m = message("assistant", None);
                        m.extra.insert("tool_calls".into(), json!([call]));
                        messages.push(m);
                    }
                }
            }
            "function_call_output" => {
                let output = match item.get("output") {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Array(parts)) => parts_text(parts, &param)?,
                    _ => {
                        return Err(ApiError::invalid(
                            format!("{param}.output must be a string"),
                            format!("{param}.output"),
                        ));
                    }
                };
                let mut m = message("tool", Some(Content::Text(output)));
                m.extra.insert("tool_call_id".into(), json!(field_str(&item, "call_id", &param)?));
                messages.push(m);
            }
            // The model's own reasoning from an earlier turn: chat upstreams take none back.
            "reasoning" => {}
            "item_reference" => {
                return Err(unsupported(
                    format!("{param}: `item_reference` needs items stored by the Responses API; send the item itself"),
                    &param,
                ));
            }
            other => {
                return Err(unsupported(format!("{param}.type {other:?} is not supported by bon-proxy"), &param));
            }
        }
    }
    Ok(messages)
}

fn field_str(item: &Value, field: &str, param: &str) -> Result<String, ApiError> {
    item.get(field)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| ApiError::invalid(format!("{param}.{field} must be a string"), format!("{param}.{field}")))
}

/// A message item: `role` and `content` (a string or input parts).
fn input_message(item: Value, param: &str) -> Result<Message, ApiError> {
    let role = field_str(&item, "role", param)?;
    if !["user", "system", "developer", "assistant"].contains(&role.as_str()) {
        return Err(ApiError::invalid(
            format!("{param}.role {role:?} is not one of user, system, developer, assistant"),
            format!("{param}.role"),
        ));
    }
    let content = match item.get("content") {
        Some(Value::String(s)) => Content::Text(s.clone()),
        Some(Value::Array(parts)) => {
            let mut out = Vec::with_capacity(parts.len());
            for (k, part) in parts.iter().enumerate() {
                out.push(chat_part(part, &format!("{param}.content[{k}]"))?);
            }
            Content::Parts(out)
        }
        _ => {
            return Err(ApiError::invalid(
                format!("{param}.content must be a string or an array of parts"),
                format!("{param}.content"),
            ));
        }
    };
    Ok(message(&role, Some(content)))
}

/// One content part in its chat form.
fn chat_part(part: &Value, param: &str) -> Result<Value, ApiError> {
    let kind = part.get("type").and_then(Value::as_str).unwrap_or("");
    match kind {
        "input_text" | "output_text" | "text" => Ok(json!({"type": "text", "text": field_str(part, "text", param)?})),
        "refusal" => Ok(json!({"type": "text", "text": field_str(part, "refusal", param)?})),
        "input_image" => {
            let url = field_str(part, "image_url", param).map_err(|_| {
                unsupported(format!("{param}: only images given by `image_url` are supported (no `file_id`)"), param)
            })?;
            let mut image = json!({"url": url});
            if let Some(detail) = part.get("detail").filter(|d| d.is_string()) {
                image["detail"] = detail.clone();
            }
            Ok(json!({"type": "image_url", "image_url": image}))
        }
        other => Err(unsupported(format!("{param}.type {other:?} is not supported by bon-proxy"), param)),
    }
}

/// The text of output parts (a function call's output given as parts).
fn parts_text(parts: &[Value], param: &str) -> Result<String, ApiError> {
    let mut text = String::new();
    for (k, part) in parts.iter().enumerate() {
        match chat_part(part, &format!("{param}.output[{k}]"))? {
            Value::Object(p) if p.get("type").and_then(Value::as_str) == Some("text") => {
                text.push_str(p.get("text").and_then(Value::as_str).unwrap_or(""));
            }
            _ => {
                return Err(unsupported(format!("{param}.output[{k}]: only text parts are supported"), param));
            }
        }
    }
    Ok(text)
}

/// Function tools in their chat form; other tool types are OpenAI's own and refused.
fn chat_tools(tools: &Value) -> Result<Value, ApiError> {
    let Value::Array(tools) = tools else {
        return Err(ApiError::invalid("`tools` must be an array", "tools".to_owned()));
    };
    let mut out = Vec::with_capacity(tools.len());
    for (i, tool) in tools.iter().enumerate() {
        let param = format!("tools[{i}]");
        match tool.get("type").and_then(Value::as_str) {
            Some("function") => {}
            other => {
                return Err(unsupported(
                    format!(
                        "{param}.type {other:?}: bon-proxy serves function tools only (the upstream runs no built-in tools)"
                    ),
                    &param,
                ));
            }
        }
        let mut function = Map::new();
        function.insert("name".into(), json!(field_str(tool, "name", &param)?));
        for k in ["description", "parameters", "strict"] {
            if let Some(v) = tool.get(k).filter(|v| !v.is_null()) {
                function.insert(k.into(), v.clone());
            }
        }
        out.push(json!({"type": "function", "function": function}));
    }
    Ok(Value::Array(out))
}

/// `tool_choice` in its chat form.
fn chat_tool_choice(choice: Value) -> Result<Value, ApiError> {
    match &choice {
        Value::String(s) if ["auto", "none", "required"].contains(&s.as_str()) => Ok(choice),
        Value::Object(o) if o.get("type").and_then(Value::as_str) == Some("function") => {
            let name = field_str(&choice, "name", "tool_choice")?;
            Ok(json!({"type": "function", "function": {"name": name}}))
        }
        _ => Err(unsupported(
            "`tool_choice` must be \"auto\", \"none\", \"required\" or a function".to_owned(),
            "tool_choice",
        )),
    }
}

/// `text.format` as chat's `response_format` (None for plain text).
fn response_format(text: &Value) -> Result<Option<Value>, ApiError> {
    let Some(format) = text.get("format").filter(|f| !f.is_null()) else { return Ok(None) };
    match format.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(json!({"type": "json_object"}))),
        Some("json_schema") => {
            let mut schema = Map::new();
            for k in ["name", "schema", "strict", "description"] {
                if let Some(v) = format.get(k).filter(|v| !v.is_null()) {
                    schema.insert(k.into(), v.clone());
                }
            }
            if !schema.contains_key("schema") {
                return Err(ApiError::invalid(
                    "text.format.schema is required for json_schema",
                    "text.format.schema".to_owned(),
                ));
            }
            Ok(Some(json!({"type": "json_schema", "json_schema": schema})))
        }
        other => Err(unsupported(format!("text.format.type {other:?} is not supported"), "text.format.type")),
    }
}
