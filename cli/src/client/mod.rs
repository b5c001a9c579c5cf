//! The client commands: each is one or two REST calls, printed as a table or as the API's JSON.

mod http;
mod table;

use std::process::ExitCode;

use anyhow::{Context, Result};
use serde_json::{Value, json};

use crate::args::{ClientArgs, Output, SandboxCommand, TemplateCommand};
use http::ApiClient;

/// Runs a `sandbox …` command.
pub async fn sandbox(args: ClientArgs, command: SandboxCommand) -> Result<ExitCode> {
    let client = ApiClient::new(&args)?;
    let output = args.output;
    match command {
        SandboxCommand::Create {
            name,
            template,
            namespace,
            timeout,
            idle_timeout,
            storage_size,
        } => {
            let mut body = json!({
                "name": name,
                "templateRef": {"name": template, "kind": "ClusterSandboxTemplate"},
            });
            if let Some(ns) = namespace {
                body["namespace"] = json!(ns);
            }
            if let Some(t) = timeout {
                body["timeout"] = json!(t);
            }
            if let Some(t) = idle_timeout {
                body["idleTimeout"] = json!(t);
            }
            if let Some(size) = storage_size {
                body["storage"] = json!({"size": size});
            }
            let created = client.post("/sandboxes", &body).await?;
            print_sandboxes(output, &created, std::slice::from_ref(&created));
        }
        SandboxCommand::List { namespace, status } => {
            let mut query = Vec::new();
            if let Some(ns) = namespace {
                query.push(("namespace", ns));
            }
            if let Some(st) = status {
                query.push(("status", st));
            }
            let listed = client.get_query("/sandboxes", &query).await?;
            let items = listed["sandboxes"].as_array().cloned().unwrap_or_default();
            print_sandboxes(output, &listed, &items);
        }
        SandboxCommand::Get { id } => {
            let sandbox = client.get(&format!("/sandboxes/{id}")).await?;
            print_sandboxes(output, &sandbox, std::slice::from_ref(&sandbox));
        }
        SandboxCommand::Exec {
            id,
            timeout,
            command,
        } => {
            let command = command
                .iter()
                .map(|a| shell_quote(a))
                .collect::<Vec<_>>()
                .join(" ");
            let result = client
                .post_with_timeout(
                    &format!("/sandboxes/{id}/exec"),
                    &json!({"command": command, "timeout": timeout}),
                    std::time::Duration::from_secs(timeout + 10),
                )
                .await?;
            if output == Output::Json {
                println!("{}", serde_json::to_string_pretty(&result)?);
            } else {
                print!("{}", result["stdout"].as_str().unwrap_or_default());
                eprint!("{}", result["stderr"].as_str().unwrap_or_default());
            }
            let code = result["exitCode"]
                .as_i64()
                .context("the server's exec answer has no exitCode")?;
            return Ok(ExitCode::from(
                u8::try_from(code.clamp(0, 255)).unwrap_or(1),
            ));
        }
        SandboxCommand::Stop { id } => {
            let result = client
                .post(&format!("/sandboxes/{id}/stop"), &json!({}))
                .await?;
            print_status(output, &result, &format!("sandbox {id} stopped"));
        }
        SandboxCommand::Resume { id } => {
            let result = client
                .post(&format!("/sandboxes/{id}/resume"), &json!({}))
                .await?;
            print_status(output, &result, &format!("sandbox {id} resumed"));
        }
        SandboxCommand::Clone { id, name } => {
            let body = match name {
                Some(name) => json!({"name": name}),
                None => json!({}),
            };
            let result = client
                .post(&format!("/sandboxes/{id}/clone"), &body)
                .await?;
            let clone = result["name"].as_str().unwrap_or_default();
            print_status(output, &result, &format!("sandbox {id} cloned to {clone}"));
        }
        SandboxCommand::Delete { id } => {
            client.delete(&format!("/sandboxes/{id}")).await?;
            print_status(
                output,
                &json!({"status": "deleted", "id": id}),
                &format!("sandbox {id} deleted"),
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs a `template …` command.
pub async fn template(args: ClientArgs, command: TemplateCommand) -> Result<ExitCode> {
    let client = ApiClient::new(&args)?;
    let (raw, items) = match command {
        TemplateCommand::List => {
            let listed = client.get("/templates").await?;
            let items = listed["templates"].as_array().cloned().unwrap_or_default();
            (listed, items)
        }
        TemplateCommand::Get { name } => {
            let template = client.get(&format!("/templates/{name}")).await?;
            (template.clone(), vec![template])
        }
    };
    if args.output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&raw)?);
    } else {
        let rows = items
            .iter()
            .map(|t| vec![text(&t["name"]), text(&t["image"]), text(&t["description"])])
            .collect();
        table::print(&["NAME", "IMAGE", "DESCRIPTION"], rows);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_sandboxes(output: Output, raw: &Value, items: &[Value]) {
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(raw).unwrap_or_default());
        return;
    }
    let rows = items
        .iter()
        .map(|s| {
            vec![
                text(&s["name"]),
                text(&s["namespace"]),
                text(&s["status"]),
                text(&s["templateRef"]),
                text(&s["createdAt"]),
                text(&s["message"]),
            ]
        })
        .collect();
    table::print(
        &[
            "NAME",
            "NAMESPACE",
            "STATUS",
            "TEMPLATE",
            "CREATED",
            "MESSAGE",
        ],
        rows,
    );
}

fn print_status(output: Output, raw: &Value, human: &str) {
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(raw).unwrap_or_default());
    } else {
        println!("{human}");
    }
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Quotes an argument for `/bin/sh` unless it is plainly safe, as Python's `shlex.quote` does.
fn shell_quote(arg: &str) -> String {
    let safe = !arg.is_empty()
        && arg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"@%+=:,./-_".contains(&b));
    if safe {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', "'\"'\"'"))
    }
}

#[cfg(test)]
mod tests {
    use super::shell_quote;

    #[test]
    fn quotes_like_shlex() {
        assert_eq!(shell_quote("ls"), "ls");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("it's"), "'it'\"'\"'s'");
    }
}
