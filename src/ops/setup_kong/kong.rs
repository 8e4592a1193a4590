//! The two Admin APIs `setup kong` talks to, and what it changes for a real Kong.
//!
//! `GET /` tells them apart: `gwctl serve` answers `"tagline": "Welcome to gwctl"`, Kong
//! `"Welcome to kong"` (kong-compat §1.9, CONTRACT.md). Both speak the same Admin API; the
//! difference is in the plugins:
//!
//! - gwctl's `jwt-claim-headers` (copy claims of the token `jwt` verified to upstream headers)
//!   does not exist in Kong. For Kong it becomes an equivalent `post-function` at the same
//!   scope, whose `config.access` Lua ([`claim_headers_lua`]) runs in the access phase at
//!   priority -1000, after every other plugin and so after `jwt` (1450). It reads the token the
//!   jwt plugin verified from `kong.ctx.shared.authenticated_jwt_token` (set by Kong's jwt
//!   handler only for a verified, non-anonymous token), decodes the claims, and sets the
//!   configured headers with `kong.service.request.set_header`, after clearing them so a client
//!   can never send them itself. Values follow jwt-claim-headers (strings as they are, null or
//!   missing claims absent, values that are not header text skipped, other values as compact
//!   JSON), except that an object claim keeps the token's key order where gwctl sorts the keys.
//!   The Lua uses only `kong` and the pure functions of Kong's default `untrusted_lua = sandbox`
//!   environment (no `require`, no `table.concat`, no `bit`), so it runs on a stock Kong.
//! - The difference that remains: the post-function runs last (priority -1000) where
//!   jwt-claim-headers runs right after jwt (1449), so on Kong plugins between them (e.g.
//!   request-transformer) do not see the claim headers.
//! - `response-compression` and `circuit-breaker` are gwctl's own, with no Kong equivalent: a
//!   file using them is refused for Kong, naming each one, before anything is changed.
//!
//! When `GET /` lists `plugins.available_on_server` (Kong and gwctl both do), a plugin the
//! server does not have is refused the same way, instead of failing halfway through the run.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde_json::{Value, json};

use super::Kind;
use super::SetupKongError;
use super::file::DesiredState;
use super::plan::Key;

/// Which Admin API answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// `gwctl serve`.
    Gwctl,
    /// Kong Gateway 3.x.
    Kong,
}

/// What `GET /` told about the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerInfo {
    /// gwctl or Kong.
    pub dialect: Dialect,
    /// The Kong version it reports (gwctl reports the Kong version it matches).
    pub version: String,
    /// `plugins.available_on_server`, when reported.
    pub available_plugins: Option<BTreeSet<String>>,
}

/// gwctl's plugins Kong has no equivalent for.
pub const GWCTL_ONLY_PLUGINS: [&str; 2] = ["response-compression", "circuit-breaker"];

impl ServerInfo {
    /// Read `GET /`'s body.
    pub fn from_root(root: &Value) -> Result<Self, SetupKongError> {
        let tagline = root.get("tagline").and_then(Value::as_str).unwrap_or("");
        let version = root
            .get("version")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let dialect = if tagline.eq_ignore_ascii_case("Welcome to gwctl") {
            Dialect::Gwctl
        } else {
            Dialect::Kong
        };
        if dialect == Dialect::Kong && !version.starts_with("3.") {
            return Err(SetupKongError::Unsupported(format!(
                "setup kong supports Kong 3.x; the Admin API reports version {version:?}"
            )));
        }
        let available_plugins = root
            .pointer("/plugins/available_on_server")
            .and_then(Value::as_object)
            .map(|m| m.keys().cloned().collect());
        Ok(Self {
            dialect,
            version,
            available_plugins,
        })
    }

    /// `Kong 3.9.0` or `gwctl (Kong 3.9.0 compatible)`.
    pub fn describe(&self) -> String {
        match self.dialect {
            Dialect::Kong => format!("Kong {}", self.version),
            Dialect::Gwctl => format!("gwctl (Kong {} compatible)", self.version),
        }
    }
}

/// Adapt the desired state to the server: translate or refuse what it cannot run.
pub(crate) fn adapt(state: &mut DesiredState, server: &ServerInfo) -> Result<(), SetupKongError> {
    if server.dialect == Dialect::Kong {
        let refused: Vec<String> = state
            .entities
            .iter()
            .filter(|d| d.kind == Kind::Plugin)
            .filter_map(|d| {
                let name = d.plugin_name()?;
                GWCTL_ONLY_PLUGINS
                    .contains(&name)
                    .then(|| format!("{name} ({})", d.path))
            })
            .collect();
        if !refused.is_empty() {
            return Err(SetupKongError::Unsupported(format!(
                "{} has no equivalent of gwctl's own plugins: {}; remove them from {} to \
                 configure Kong",
                server.describe(),
                refused.join(", "),
                state.path
            )));
        }
        translate_claim_headers(state)?;
    }
    if let Some(available) = &server.available_plugins {
        let missing: Vec<String> = state
            .entities
            .iter()
            .filter(|d| d.kind == Kind::Plugin)
            .filter_map(|d| {
                let name = d.plugin_name()?;
                (!available.contains(name)).then(|| format!("{name} ({})", d.path))
            })
            .collect();
        if !missing.is_empty() {
            return Err(SetupKongError::Unsupported(format!(
                "{} does not have the plugins {} (enable them in its `plugins` setting)",
                server.describe(),
                missing.join(", ")
            )));
        }
    }
    Ok(())
}

/// `jwt-claim-headers` -> `post-function` with [`claim_headers_lua`], same scope.
fn translate_claim_headers(state: &mut DesiredState) -> Result<(), SetupKongError> {
    let mut problems = Vec::new();
    let taken: BTreeSet<Key> = state
        .entities
        .iter()
        .filter(|d| d.kind == Kind::Plugin && d.plugin_name() == Some("post-function"))
        .map(|d| d.key.clone())
        .collect();
    for d in &mut state.entities {
        if d.kind != Kind::Plugin || d.plugin_name() != Some("jwt-claim-headers") {
            continue;
        }
        let claims = d
            .fields
            .get("config")
            .and_then(|c| c.get("claims"))
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| v.as_str().map(|h| (k.clone(), h.to_owned())))
                    .collect::<Option<BTreeMap<String, String>>>()
            });
        let Some(Some(claims)) = claims else {
            problems.push(format!(
                "{}.config.claims: expected a map of claim names to header names",
                d.path
            ));
            continue;
        };
        let key = Key::plugin("post-function", &d.scope);
        if taken.contains(&key) {
            problems.push(format!(
                "{}: jwt-claim-headers becomes a post-function for Kong, and the file already \
                 has a post-function at {}",
                d.path,
                d.scope.describe()
            ));
            continue;
        }
        d.fields
            .insert("name".to_owned(), Value::from("post-function"));
        d.fields.insert(
            "config".to_owned(),
            json!({ "access": [claim_headers_lua(&claims)] }),
        );
        d.key = key;
        d.label = format!(
            "post-function ({}) from jwt-claim-headers",
            d.scope.describe()
        );
        d.translated_from = Some("jwt-claim-headers".to_owned());
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(SetupKongError::InvalidFile {
            path: state.path.clone(),
            problems,
        })
    }
}

/// A Lua string literal for `s` (every byte outside printable ASCII as a `\ddd` escape).
fn lua_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for b in s.bytes() {
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(char::from(b)),
            _ => {
                let _ = write!(out, "\\{b:03}");
            }
        }
    }
    out.push('"');
    out
}

/// The body of the Lua chunk; `CLAIMS` is prepended by [`claim_headers_lua`].
const CLAIM_HEADERS_LUA: &str = r#"
local B64 = {}
do
  local alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
  for i = 1, 64 do
    B64[string.byte(alphabet, i)] = i - 1
  end
  B64[string.byte("+")] = 62
  B64[string.byte("/")] = 63
end

-- base64url (padding optional) -> bytes, or nil.
local function b64_decode(s)
  local out, acc, bits = "", 0, 0
  for i = 1, #s do
    local c = string.byte(s, i)
    local v = B64[c]
    if v then
      acc = acc * 64 + v
      bits = bits + 6
      if bits >= 8 then
        bits = bits - 8
        local byte = math.floor(acc / 2 ^ bits)
        out = out .. string.char(byte)
        acc = acc - byte * 2 ^ bits
      end
    elseif c ~= 61 then -- "="
      return nil
    end
  end
  return out
end

local function skip(s, i)
  local _, e = string.find(s, "^[ \t\r\n]*", i)
  return e + 1
end

local function utf8(cp)
  if cp < 128 then
    return string.char(cp)
  elseif cp < 2048 then
    return string.char(192 + math.floor(cp / 64), 128 + cp % 64)
  elseif cp < 65536 then
    return string.char(224 + math.floor(cp / 4096), 128 + math.floor(cp / 64) % 64, 128 + cp % 64)
  end
  return string.char(240 + math.floor(cp / 262144), 128 + math.floor(cp / 4096) % 64,
    128 + math.floor(cp / 64) % 64, 128 + cp % 64)
end

local ESCAPES = { ['"'] = '"', ["\\"] = "\\", ["/"] = "/", b = "\b", f = "\f", n = "\n", r = "\r", t = "\t" }

-- A JSON string at s[i] == '"': its decoded text, its source text, the index after it.
local function json_string(s, i)
  local out, j = "", i + 1
  while true do
    local k = string.find(s, '["\\]', j)
    if not k then
      return nil
    end
    out = out .. string.sub(s, j, k - 1)
    if string.sub(s, k, k) == '"' then
      return out, string.sub(s, i, k), k + 1
    end
    local e = string.sub(s, k + 1, k + 1)
    if e == "u" then
      local cp = tonumber(string.sub(s, k + 2, k + 5), 16)
      if not cp or #string.sub(s, k + 2, k + 5) ~= 4 then
        return nil
      end
      j = k + 6
      if cp >= 55296 and cp <= 56319 and string.sub(s, j, j + 1) == "\\u" then
        local lo = tonumber(string.sub(s, j + 2, j + 5), 16)
        if lo and lo >= 56320 and lo <= 57343 then
          cp = 65536 + (cp - 55296) * 1024 + (lo - 56320)
          j = j + 6
        end
      end
      out = out .. utf8(cp)
    elseif ESCAPES[e] then
      out = out .. ESCAPES[e]
      j = k + 2
    else
      return nil
    end
  end
end

local json_value

-- An object or array at s[i]: its compact text and the index after it.
local function json_compound(s, i, close)
  local text = string.sub(s, i, i)
  local j = skip(s, i + 1)
  if string.sub(s, j, j) == close then
    return text .. close, j + 1
  end
  while true do
    if close == "}" then
      if string.sub(s, j, j) ~= '"' then
        return nil
      end
      local _, raw, k = json_string(s, j)
      if not k then
        return nil
      end
      k = skip(s, k)
      if string.sub(s, k, k) ~= ":" then
        return nil
      end
      text = text .. raw .. ":"
      j = skip(s, k + 1)
    end
    local _, raw, k = json_value(s, j)
    if not k then
      return nil
    end
    text = text .. raw
    j = skip(s, k)
    local c = string.sub(s, j, j)
    if c == close then
      return text .. close, j + 1
    elseif c ~= "," then
      return nil
    end
    text = text .. ","
    j = skip(s, j + 1)
  end
end

-- A JSON value at s[i]: the header text for it (strings decoded, null nil, anything else its
-- compact JSON), its compact source text, the index after it (nil when malformed).
json_value = function(s, i)
  local c = string.sub(s, i, i)
  if c == '"' then
    return json_string(s, i)
  elseif c == "{" or c == "[" then
    local raw, j = json_compound(s, i, c == "{" and "}" or "]")
    return raw, raw, j
  elseif string.sub(s, i, i + 3) == "true" then
    return "true", "true", i + 4
  elseif string.sub(s, i, i + 4) == "false" then
    return "false", "false", i + 5
  elseif string.sub(s, i, i + 3) == "null" then
    return nil, "null", i + 4
  end
  local num = string.match(s, "^-?%d+%.?%d*[eE]?[-+]?%d*", i)
  if not num then
    return nil
  end
  return num, num, i + #num
end

-- The claims of a JWT (claim -> header text), or nil when it does not decode.
local function claims_of(token)
  if type(token) ~= "string" then
    return nil
  end
  local a = string.find(token, ".", 1, true)
  local b = a and string.find(token, ".", a + 1, true)
  if not b then
    return nil
  end
  local s = b64_decode(string.sub(token, a + 1, b - 1))
  if not s then
    return nil
  end
  local i = skip(s, 1)
  if string.sub(s, i, i) ~= "{" then
    return nil
  end
  local claims = {}
  i = skip(s, i + 1)
  if string.sub(s, i, i) == "}" then
    return claims
  end
  while true do
    if string.sub(s, i, i) ~= '"' then
      return nil
    end
    local name, _, j = json_string(s, i)
    if not j then
      return nil
    end
    j = skip(s, j)
    if string.sub(s, j, j) ~= ":" then
      return nil
    end
    local text, _, k = json_value(s, skip(s, j + 1))
    if not k then
      return nil
    end
    claims[name] = text
    k = skip(s, k)
    local c = string.sub(s, k, k)
    if c == "}" then
      return claims
    elseif c ~= "," then
      return nil
    end
    i = skip(s, k + 1)
  end
end

return function()
  local set_header = kong.service.request.set_header
  local add_header = kong.service.request.add_header
  for i = 1, #CLAIMS do
    kong.service.request.clear_header(CLAIMS[i][2])
  end
  local claims = claims_of(kong.ctx.shared.authenticated_jwt_token)
  if not claims then
    return
  end
  local done = {}
  for i = 1, #CLAIMS do
    local value = claims[CLAIMS[i][1]]
    local header = CLAIMS[i][2]
    -- Like jwt-claim-headers, only values that are valid header text (no control characters
    -- but tab).
    if value ~= nil and not string.find(value, "[%z\1-\8\10-\31\127]") then
      local key = string.lower(header)
      -- Two claims for one header: both values, as jwt-claim-headers sends them.
      if done[key] then
        pcall(add_header, header, value)
      elseif pcall(set_header, header, value) then
        done[key] = true
      end
    end
  end
end
"#;

/// The `post-function` access code equivalent to `jwt-claim-headers` with `claims` (claim name
/// -> header name). Deterministic (claims in name order), so re-running `setup kong` finds it
/// unchanged.
pub fn claim_headers_lua(claims: &BTreeMap<String, String>) -> String {
    let mut out = String::from(
        "-- gwctl setup kong: jwt-claim-headers for Kong. Copies claims of the token the jwt\n\
         -- plugin verified to upstream request headers; clears them first so a client cannot\n\
         -- set them. Strings as they are, null or missing claims absent, other values as JSON.\n\
         local CLAIMS = {",
    );
    for (claim, header) in claims {
        let _ = write!(out, " {{ {}, {} }},", lua_string(claim), lua_string(header));
    }
    out.push_str(" }\n");
    out.push_str(CLAIM_HEADERS_LUA.trim_start());
    out
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::ops::setup_kong::file::from_text;

    fn root(tagline: &str, version: &str, plugins: &[&str]) -> Value {
        let available: serde_json::Map<String, Value> = plugins
            .iter()
            .map(|p| ((*p).to_owned(), json!({"version": version, "priority": 1})))
            .collect();
        json!({"tagline": tagline, "version": version, "plugins": {"available_on_server": available}})
    }

    const FILE: &str = r#"
_format_version: "3.0"
services:
  - name: monitor
    host: monitor-upstream
    plugins:
      - name: jwt
      - name: jwt-claim-headers
        config: { claims: { sub: auth-user-identifier } }
"#;

    #[test]
    fn dialects() {
        let g = ServerInfo::from_root(&root("Welcome to gwctl", "3.9.0", &["jwt"])).unwrap();
        assert_eq!(g.dialect, Dialect::Gwctl);
        let k = ServerInfo::from_root(&root("Welcome to kong", "3.9.0", &["jwt"])).unwrap();
        assert_eq!(
            (k.dialect, k.describe().as_str()),
            (Dialect::Kong, "Kong 3.9.0")
        );
        let old = ServerInfo::from_root(&root("Welcome to kong", "2.8.1", &[])).unwrap_err();
        assert_eq!(
            old.to_string(),
            "setup kong supports Kong 3.x; the Admin API reports version \"2.8.1\""
        );
    }

    #[test]
    fn kong_gets_a_post_function_at_the_same_scope() {
        let mut s = from_text("f.yml", FILE, &HashMap::new()).unwrap();
        let kong =
            ServerInfo::from_root(&root("Welcome to kong", "3.9.0", &["jwt", "post-function"]))
                .unwrap();
        adapt(&mut s, &kong).unwrap();
        let p = &s.entities[2];
        assert_eq!(
            p.label,
            "post-function (service monitor) from jwt-claim-headers"
        );
        assert_eq!(p.plugin_name(), Some("post-function"));
        assert_eq!(p.fields["name"], "post-function");
        let code = p.fields["config"]["access"][0].as_str().unwrap();
        assert!(
            code.contains(r#"local CLAIMS = { { "sub", "auth-user-identifier" }, }"#),
            "{code}"
        );
        assert!(code.contains("kong.ctx.shared.authenticated_jwt_token"));
        assert!(code.contains("kong.service.request.set_header"));
        // Same input, same code.
        let mut again = from_text("f.yml", FILE, &HashMap::new()).unwrap();
        adapt(&mut again, &kong).unwrap();
        assert_eq!(again.entities[2].fields, p.fields);

        // gwctl keeps its own plugin.
        let mut s = from_text("f.yml", FILE, &HashMap::new()).unwrap();
        let gw = ServerInfo::from_root(&root(
            "Welcome to gwctl",
            "3.9.0",
            &["jwt", "jwt-claim-headers"],
        ))
        .unwrap();
        adapt(&mut s, &gw).unwrap();
        assert_eq!(s.entities[2].plugin_name(), Some("jwt-claim-headers"));
    }

    #[test]
    fn refusals_name_every_plugin() {
        let text = r#"
_format_version: "3.0"
services:
  - name: s
    host: h
    plugins:
      - name: response-compression
plugins:
  - name: circuit-breaker
    service: s
  - name: my-custom
"#;
        let kong = ServerInfo::from_root(&root("Welcome to kong", "3.9.1", &["jwt"])).unwrap();
        let mut s = from_text("kong.yml", text, &HashMap::new()).unwrap();
        assert_eq!(
            adapt(&mut s, &kong).unwrap_err().to_string(),
            "Kong 3.9.1 has no equivalent of gwctl's own plugins: response-compression \
             (services[0].plugins[0]), circuit-breaker (plugins[0]); remove them from kong.yml \
             to configure Kong"
        );
        let gw = ServerInfo::from_root(&root(
            "Welcome to gwctl",
            "3.9.0",
            &["circuit-breaker", "response-compression"],
        ))
        .unwrap();
        let mut s = from_text("kong.yml", text, &HashMap::new()).unwrap();
        assert_eq!(
            adapt(&mut s, &gw).unwrap_err().to_string(),
            "gwctl (Kong 3.9.0 compatible) does not have the plugins my-custom (plugins[1]) \
             (enable them in its `plugins` setting)"
        );
    }

    #[test]
    fn lua_strings_are_escaped() {
        assert_eq!(lua_string(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(lua_string("é\n"), r#""\195\169\010""#);
    }
}
