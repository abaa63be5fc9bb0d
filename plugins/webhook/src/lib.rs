//! Kairo's generic web request action plugin: calls any HTTP endpoint.

use async_trait::async_trait;
use kairo_plugin::params::{InvalidParams, invalid, only_keys, optional_str, require_str};
use kairo_plugin::{Action, ActionContext, ActionError, ActionOutcome, ActionRequest};
use reqwest::Method;
use serde_json::Value;

const PARAMS: [&str; 4] = ["url", "method", "headers", "body"];

/// The `webhook` action: params `{url, method? (POST), headers? {name: value}, body?}`.
///
/// A string body is sent as is (`text/plain` unless a `Content-Type` header is
/// given); any other JSON body is sent as `application/json`. GET and DELETE send no body.
#[derive(Debug, Clone, Default)]
pub struct WebhookAction;

#[derive(Debug)]
struct Call {
    method: Method,
    url: String,
    headers: Vec<(String, String)>,
    body: Option<Value>,
}

fn parse(params: &Value) -> Result<Call, InvalidParams> {
    only_keys(params, &PARAMS)?;
    let url = require_str(params, "url")?.to_string();
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(InvalidParams::value(
            "url",
            format!("must be an http(s) URL, got {url:?}"),
        ));
    }
    let method = optional_str(params, "method")?
        .unwrap_or("POST")
        .to_ascii_uppercase();
    let method = match method.as_str() {
        "GET" | "POST" | "PUT" | "PATCH" | "DELETE" => {
            Method::from_bytes(method.as_bytes()).expect("valid method")
        }
        other => {
            return Err(InvalidParams::value(
                "method",
                format!("must be GET, POST, PUT, PATCH or DELETE, got {other:?}"),
            ));
        }
    };
    let mut headers = Vec::new();
    match params.get("headers") {
        None | Some(Value::Null) => {}
        Some(Value::Object(map)) => {
            for (name, value) in map {
                let value = value.as_str().ok_or_else(|| {
                    InvalidParams::wrong_type(&format!("headers.{name}"), "a string", value)
                })?;
                headers.push((name.clone(), value.to_string()));
            }
        }
        Some(other) => {
            return Err(InvalidParams::wrong_type(
                "headers",
                "a map of strings",
                other,
            ));
        }
    }
    let body = match params.get("body") {
        None | Some(Value::Null) => None,
        Some(_) if method == Method::GET || method == Method::DELETE => None,
        Some(body) => Some(body.clone()),
    };
    Ok(Call {
        method,
        url,
        headers,
        body,
    })
}

#[async_trait]
impl Action for WebhookAction {
    fn name(&self) -> &str {
        "webhook"
    }

    fn version(&self) -> &str {
        env!("CARGO_PKG_VERSION")
    }

    fn validate(&self, params: &Value) -> Result<(), InvalidParams> {
        parse(params).map(|_| ())
    }

    async fn execute(
        &self,
        request: &ActionRequest,
        cx: &ActionContext,
    ) -> Result<ActionOutcome, ActionError> {
        let call = parse(&request.params).map_err(invalid)?;
        let has_content_type = call
            .headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("content-type"));
        let mut builder = cx.http.request(call.method, &call.url);
        for (name, value) in &call.headers {
            builder = builder.header(name, value);
        }
        builder = match call.body {
            Some(Value::String(text)) if has_content_type => builder.body(text),
            Some(Value::String(text)) => builder
                .header("content-type", "text/plain; charset=utf-8")
                .body(text),
            Some(json) if has_content_type => builder.body(json.to_string()),
            Some(json) => builder.json(&json),
            None => builder,
        };
        kairo_plugin::http::send(builder, cx).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parse_checks_url_method_and_headers() {
        let ok = parse(&json!({"url": "http://127.0.0.1/x", "method": "put", "body": {"a": 1}}))
            .unwrap();
        assert_eq!(ok.method, Method::PUT);
        assert!(ok.body.is_some());
        let get = parse(&json!({"url": "http://127.0.0.1/x", "method": "GET", "body": "ignored"}))
            .unwrap();
        assert!(get.body.is_none(), "GET sends no body");
        assert!(
            parse(&json!({"url": "ftp://x"}))
                .unwrap_err()
                .to_string()
                .contains("`url`")
        );
        assert!(
            parse(&json!({"url": "http://x", "method": "TRACE"}))
                .unwrap_err()
                .to_string()
                .contains("`method`")
        );
        assert!(
            parse(&json!({"url": "http://x", "headers": {"a": 1}}))
                .unwrap_err()
                .to_string()
                .contains("`headers.a`")
        );
    }
}
