//! The tasks extension (`io.modelcontextprotocol/tasks`, SEP-2663) as a 2026-07-28 server does
//! it, for the conformance suite's `tasks-*` scenarios (run directly and through Warden): the
//! tools those scenarios name, a task table shared by every session of the process (a stateless
//! client's follow-ups may arrive in any session), `tasks/get`, `tasks/update` and
//! `tasks/cancel`.
//!
//! A task is created only for a request whose `_meta` client capabilities name the extension;
//! without it a task-supporting tool runs synchronously, and one that requires a task answers
//! -32021. The table holds at most [`MAX_TASKS`] tasks (the oldest terminal ones go first) and
//! a task's body is stopped when it is cancelled.

use parking_lot::Mutex;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};
use tokio::sync::oneshot;
use warden_protocol::jsonrpc::{self, ErrorObject};

use warden_protocol::modern;
pub use warden_protocol::modern::TASKS_EXTENSION as TASKS;
const MISSING_CLIENT_CAPABILITY: i64 = -32021;
/// Tasks kept at once.
pub const MAX_TASKS: usize = 1024;
const TTL_MS: u64 = 600_000;
const POLL_MS: u64 = 200;

/// The tools of the tasks scenarios, as listed.
pub fn tools() -> Vec<Value> {
    let t = |name: &str, desc: &str, props: Value, support: &str| {
        json!({"name": name, "description": desc, "inputSchema": {"type": "object", "properties": props},
               "execution": {"taskSupport": support}})
    };
    vec![
        t("greet", "Says hello (never a task)", json!({"name": {"type": "string"}}), "forbidden"),
        t(
            "slow_compute",
            "Computes for `seconds` seconds (a task when the client takes one)",
            json!({"seconds": {"type": "number"}, "label": {"type": "string"}}),
            "optional",
        ),
        t("failing_job", "A task whose tool reports an error", json!({}), "required"),
        t("protocol_error_job", "A task that fails with a protocol error", json!({}), "optional"),
        t(
            "confirm_delete",
            "A task that asks the user to confirm a deletion",
            json!({"filename": {"type": "string"}}),
            "optional",
        ),
        t("multi_input", "A task that asks two questions at once", json!({}), "optional"),
        t("test_tool_with_task", "Asks a name (multi round-trip), then works on as a task", json!({}), "required"),
    ]
}

/// Whether a request is of the stateless revision (its `_meta` names one).
pub fn stateless(meta: Option<&Value>) -> bool {
    meta.and_then(|m| m.get(modern::META_VERSION)).is_some()
}

/// Whether a request takes a task: a 2026 request says so in its `_meta`, a 2025 session in
/// `initialize` (`client_caps`).
pub fn takes_tasks(meta: Option<&Value>, client_caps: &Value) -> bool {
    match meta.filter(|_| stateless(meta)) {
        Some(m) => m.get(modern::META_CAPABILITIES).is_some_and(modern::declares_tasks),
        None => modern::declares_tasks(client_caps),
    }
}

fn text(t: impl Into<String>) -> Value {
    json!({"content": [{"type": "text", "text": t.into()}]})
}

fn now() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

/// What a task body does.
#[derive(Clone)]
pub enum Body {
    /// Sleep, then answer (`cancelled` if cancelled meanwhile).
    Compute { seconds: f64, label: String },
    /// After a second, a tool error.
    ToolError,
    /// A protocol error.
    ProtocolError,
    /// Ask the questions (key → elicitation params) at once, then answer with what came back.
    Ask { questions: Vec<(String, Value)>, then: fn(&Map<String, Value>) -> Value },
    /// Work a little, then answer with this result.
    Answer(Value),
}

struct Task {
    status: &'static str,
    message: Option<String>,
    created: String,
    updated: String,
    result: Option<Value>,
    error: Option<Value>,
    /// Outstanding questions: key → request.
    asking: Map<String, Value>,
    waiting: HashMap<String, oneshot::Sender<Value>>,
    body: Option<tokio::task::AbortHandle>,
    seq: u64,
}

#[derive(Default)]
struct Table {
    tasks: HashMap<String, Task>,
    next: u64,
}

fn table() -> &'static Mutex<Table> {
    static T: OnceLock<Mutex<Table>> = OnceLock::new();
    T.get_or_init(Default::default)
}

fn terminal(status: &str) -> bool {
    matches!(status, "completed" | "failed" | "cancelled")
}

fn unknown(id: &str) -> ErrorObject {
    ErrorObject::new(jsonrpc::INVALID_PARAMS, format!("unknown task: {id}"))
}

fn settle(id: &str, status: &'static str, result: Option<Value>, error: Option<Value>) {
    let mut t = table().lock();
    if let Some(task) = t.tasks.get_mut(id) {
        if !terminal(task.status) {
            task.status = status;
            task.result = result;
            task.error = error;
            task.asking.clear();
            task.waiting.clear();
            task.updated = now();
        }
    }
}

/// -32021 naming the extension (a tool that requires a task, asked by a client without it).
pub fn needs_tasks() -> ErrorObject {
    let mut e = ErrorObject::new(MISSING_CLIENT_CAPABILITY, "Missing required client capability");
    e.data = Some(json!({"requiredCapabilities": {"extensions": {TASKS: {}}}}));
    e
}

/// Create a task running `body`: the `CreateTaskResult`.
pub fn create(body: Body) -> Result<Value, ErrorObject> {
    let id;
    let created = now();
    {
        let mut t = table().lock();
        if t.tasks.len() >= MAX_TASKS {
            let oldest =
                t.tasks.iter().filter(|(_, k)| terminal(k.status)).min_by_key(|(_, k)| k.seq).map(|(i, _)| i.clone());
            match oldest {
                Some(o) => {
                    t.tasks.remove(&o);
                }
                None => return Err(ErrorObject::new(jsonrpc::INTERNAL_ERROR, "too many tasks running")),
            }
        }
        t.next += 1;
        let seq = t.next;
        id = format!("task-{seq}-{:08x}", rand_u32());
        t.tasks.insert(
            id.clone(),
            Task {
                status: "working",
                message: None,
                created: created.clone(),
                updated: created.clone(),
                result: None,
                error: None,
                asking: Map::new(),
                waiting: HashMap::new(),
                body: None,
                seq,
            },
        );
    }
    let tid = id.clone();
    let h = tokio::spawn(async move { run(&tid, body).await });
    if let Some(task) = table().lock().tasks.get_mut(&id) {
        task.body = Some(h.abort_handle());
    }
    Ok(json!({"resultType": "task", "taskId": id, "status": "working", "createdAt": created,
              "lastUpdatedAt": created, "ttlMs": TTL_MS, "pollIntervalMs": POLL_MS}))
}

fn rand_u32() -> u32 {
    let mut b = [0u8; 4];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b);
    u32::from_le_bytes(b)
}

async fn run(id: &str, body: Body) {
    match body {
        Body::Compute { seconds, label } => {
            tokio::time::sleep(Duration::from_secs_f64(seconds.clamp(0.0, 3600.0))).await;
            settle(id, "completed", Some(text(format!("computed {label} in {seconds}s"))), None);
        }
        Body::ToolError => {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let mut r = text("the job failed");
            r["isError"] = true.into();
            settle(id, "completed", Some(r), None);
        }
        Body::ProtocolError => {
            tokio::time::sleep(Duration::from_millis(100)).await;
            settle(id, "failed", None, Some(json!({"code": jsonrpc::INTERNAL_ERROR, "message": "the job crashed"})));
        }
        Body::Answer(r) => {
            tokio::time::sleep(Duration::from_millis(100)).await;
            settle(id, "completed", Some(r), None);
        }
        Body::Ask { questions, then } => {
            let mut waits = Vec::new();
            {
                let mut t = table().lock();
                let Some(task) = t.tasks.get_mut(id) else { return };
                task.status = "input_required";
                task.message = Some("waiting for the user".into());
                task.updated = now();
                for (k, params) in questions {
                    let (tx, rx) = oneshot::channel();
                    task.asking.insert(k.clone(), json!({"method": "elicitation/create", "params": params}));
                    task.waiting.insert(k.clone(), tx);
                    waits.push((k, rx));
                }
            }
            let mut answers = Map::new();
            for (k, rx) in waits {
                let Ok(a) = rx.await else { return };
                answers.insert(k, a);
            }
            settle(id, "completed", Some(then(&answers)), None);
        }
    }
}

/// `tasks/get`, `tasks/update` or `tasks/cancel`.
pub fn follow_up(method: &str, p: &Value) -> Result<Value, ErrorObject> {
    let id = p
        .get("taskId")
        .and_then(Value::as_str)
        .ok_or_else(|| ErrorObject::new(jsonrpc::INVALID_PARAMS, "taskId is required"))?;
    let mut t = table().lock();
    let task = t.tasks.get_mut(id).ok_or_else(|| unknown(id))?;
    match method {
        "tasks/get" => {
            let mut r = json!({"resultType": "complete", "taskId": id, "status": task.status, "createdAt": task.created,
                               "lastUpdatedAt": task.updated, "ttlMs": TTL_MS, "pollIntervalMs": POLL_MS});
            if let Some(m) = &task.message {
                r["statusMessage"] = m.clone().into();
            }
            match task.status {
                "input_required" => r["inputRequests"] = Value::Object(task.asking.clone()),
                "completed" => r["result"] = task.result.clone().unwrap_or_else(|| json!({"content": []})),
                "failed" => {
                    r["error"] = task.error.clone().unwrap_or_else(|| json!({"code": -32603, "message": "failed"}))
                }
                _ => {}
            }
            Ok(r)
        }
        "tasks/update" => {
            let responses = p.get("inputResponses").and_then(Value::as_object).cloned().unwrap_or_default();
            for (k, v) in responses {
                // Unknown or answered keys are ignored, as the extension says.
                if let Some(tx) = task.waiting.remove(&k) {
                    task.asking.remove(&k);
                    let _ = tx.send(v);
                }
            }
            if task.status == "input_required" && task.asking.is_empty() {
                task.status = "working";
                task.message = None;
                task.updated = now();
            }
            Ok(json!({"resultType": "complete"}))
        }
        "tasks/cancel" => {
            if !terminal(task.status) {
                if let Some(h) = task.body.take() {
                    h.abort();
                }
                task.status = "cancelled";
                task.asking.clear();
                task.waiting.clear();
                task.updated = now();
            }
            Ok(json!({"resultType": "complete"}))
        }
        _ => Err(ErrorObject::new(jsonrpc::METHOD_NOT_FOUND, "Method not found")),
    }
}

fn confirm_schema(message: String) -> Value {
    json!({"mode": "form", "message": message, "requestedSchema": {"type": "object",
           "properties": {"confirm": {"type": "boolean"}, "name": {"type": "string"}}}})
}

/// A tasks tool called: its result (synchronous, or the `CreateTaskResult`), or `None` when
/// `name` is not one of them.
/// A 2026 request says per request whether it takes tasks; a 2025 session said so in
/// `initialize` (`client_caps`).
pub async fn call(
    name: &str,
    args: &Value,
    meta: Option<&Value>,
    client_caps: &Value,
) -> Option<Result<Value, ErrorObject>> {
    let (stateless, with_tasks) = (stateless(meta), takes_tasks(meta, client_caps));
    let arg = |k: &str| args.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let body = match name {
        "greet" => {
            let mut r = text(format!("Hello, {}!", arg("name")));
            if stateless {
                r["resultType"] = "complete".into();
            }
            return Some(Ok(r));
        }
        "slow_compute" => {
            let seconds = args.get("seconds").and_then(Value::as_f64).unwrap_or(0.0);
            Body::Compute { seconds, label: arg("label") }
        }
        "failing_job" => Body::ToolError,
        "protocol_error_job" => Body::ProtocolError,
        "confirm_delete" => Body::Ask {
            questions: vec![("confirm".into(), confirm_schema(format!("Delete {}?", arg("filename"))))],
            then: |a| {
                let yes = a.get("confirm").and_then(|r| r.pointer("/content/confirm")) == Some(&Value::Bool(true));
                text(if yes { "deleted" } else { "kept" })
            },
        },
        "multi_input" => Body::Ask {
            questions: vec![
                ("first".into(), confirm_schema("First question".into())),
                ("second".into(), confirm_schema("Second question".into())),
            ],
            then: |a| text(format!("answered {} questions", a.len())),
        },
        _ => return None,
    };
    if with_tasks {
        return Some(create(body));
    }
    let complete = |mut r: Value| {
        if stateless {
            r["resultType"] = "complete".into();
        }
        r
    };
    // No task for this client: run it here, or refuse when the tool needs one.
    Some(match body {
        Body::Compute { seconds, label } => {
            tokio::time::sleep(Duration::from_secs_f64(seconds.clamp(0.0, 30.0))).await;
            Ok(complete(text(format!("computed {label} in {seconds}s"))))
        }
        Body::ProtocolError => Err(ErrorObject::new(jsonrpc::INTERNAL_ERROR, "the job crashed")),
        Body::ToolError | Body::Ask { .. } | Body::Answer(_) => Err(needs_tasks()),
    })
}
