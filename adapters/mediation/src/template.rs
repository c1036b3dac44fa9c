//! Mapping overrides as minijinja templates that render JSON. Beyond minijinja's filters
//! (`tojson`, `default`, …) a template has `pointer(value, "/a/0/b")` (RFC 6901 JSON
//! pointer) to pick deep values.

use serde_json::Value;

/// One compiled template.
#[derive(Debug)]
pub struct Template {
    env: minijinja::Environment<'static>,
}

fn pointer(v: minijinja::Value, p: &str) -> minijinja::Value {
    let json: Value = serde_json::to_value(&v).unwrap_or(Value::Null);
    json.pointer(p).map_or(minijinja::Value::UNDEFINED, minijinja::Value::from_serialize)
}

impl Template {
    pub fn new(src: &str) -> Result<Self, String> {
        let mut env = minijinja::Environment::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        env.add_function("pointer", pointer);
        env.add_template_owned("t", src.to_owned()).map_err(|e| match e.line() {
            Some(l) => format!("template line {l}: {}", e.detail().unwrap_or(&e.to_string())),
            None => e.to_string(),
        })?;
        Ok(Self { env })
    }

    /// Renders with `ctx` and reads the output as JSON.
    pub fn render(&self, ctx: &Value) -> Result<Value, String> {
        let t = self.env.get_template("t").map_err(|e| e.to_string())?;
        let text = t.render(ctx).map_err(|e| match e.line() {
            Some(l) => format!("template line {l}: {}", e.detail().unwrap_or(&e.to_string())),
            None => e.to_string(),
        })?;
        serde_json::from_str(&text).map_err(|e| format!("the template's output is not JSON: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_json_with_pointers_and_reports_lines() {
        let t = Template::new(
            "{\n \"cf\": {{ pointer(body, \"/richiedente/cf\") | tojson }},\n \"id\": {{ path.id | tojson }}\n}",
        )
        .unwrap();
        let out =
            t.render(&json!({"body": {"richiedente": {"cf": "RSSMRA80A01H501U"}}, "path": {"id": "P-1"}})).unwrap();
        assert_eq!(out, json!({"cf": "RSSMRA80A01H501U", "id": "P-1"}));
        assert!(Template::new("{\n{{ body.x \n").unwrap_err().starts_with("template line"));
        let missing = t.render(&json!({"body": {}})).unwrap_err();
        assert!(missing.contains("undefined"), "{missing}");
        assert!(Template::new("not json").unwrap().render(&json!({})).unwrap_err().contains("not JSON"));
    }
}
