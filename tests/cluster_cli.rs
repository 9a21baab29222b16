//! `cairn cluster status` end to end: three `cairn serve` voters, a topic with
//! replication factor 3 created through librdkafka's admin client, and the real `cairn`
//! binary as the client. First everything is healthy (3 voters, one leader, full ISRs);
//! then one broker that is not the controller is SIGKILLed, and the report must show its
//! partitions under-replicated (once the controller fenced it, after the 9 s session
//! timeout) and its voter unreachable.

mod harness;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use harness::BrokerProcess;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::RDKafkaErrorCode;

const TOPIC: &str = "status-replicated";
const PARTITIONS: i32 = 3;
const CREATE_TIMEOUT: Duration = Duration::from_secs(30);
const HEALTHY_TIMEOUT: Duration = Duration::from_secs(20);
/// Session timeout (9 s) + the controller noticing + ISR change committed, with slack.
const DEGRADED_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs `cairn cluster status ARGS` against `bootstrap`: (success, stdout, stderr).
fn cairn_cluster_status(bootstrap: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(["cluster", "status"])
        .args(args)
        .args(["--bootstrap", bootstrap, "--request-timeout-ms", "10000"])
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("run cairn cluster status");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `cairn cluster status --json`, parsed; panics if the command fails.
fn status_json(bootstrap: &str) -> Json {
    let (ok, stdout, stderr) = cairn_cluster_status(bootstrap, &["--json"]);
    assert!(ok, "cairn cluster status failed:\n{stderr}\n{stdout}");
    Json::parse(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{stdout}"))
}

fn admin(broker: &BrokerProcess) -> AdminClient<DefaultClientContext> {
    ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .create()
        .expect("admin client")
}

/// Creates the topic with RF 3, retrying while the quorum or the brokers are not ready.
async fn create_topic(broker: &BrokerProcess) {
    let started = Instant::now();
    let mut attempts = 0;
    loop {
        attempts += 1;
        let result = admin(broker)
            .create_topics(
                &[NewTopic::new(TOPIC, PARTITIONS, TopicReplication::Fixed(3))],
                &AdminOptions::new().operation_timeout(Some(Duration::from_secs(20))),
            )
            .await;
        match result.as_deref() {
            Ok([Ok(created)]) if created == TOPIC => return,
            Ok([Err((_, RDKafkaErrorCode::TopicAlreadyExists))]) if attempts > 1 => return,
            other => {
                assert!(
                    started.elapsed() < CREATE_TIMEOUT,
                    "creating {TOPIC} kept failing: {other:?}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// Voter id → (role, applied index, reachable).
fn voters(status: &Json) -> BTreeMap<i64, (String, i64, bool)> {
    status["quorum"]["voters"]
        .array()
        .iter()
        .map(|v| {
            (
                v["id"].int(),
                (
                    v["role"].string().to_owned(),
                    v["applied_index"].int(),
                    v["reachable"].boolean(),
                ),
            )
        })
        .collect()
}

/// The topic's partitions: index → (leader, replicas, isr).
fn partitions(status: &Json) -> BTreeMap<i64, (i64, Vec<i64>, Vec<i64>)> {
    let ints = |j: &Json| j.array().iter().map(Json::int).collect::<Vec<_>>();
    status["partitions"]
        .array()
        .iter()
        .filter(|p| p["topic"].string() == TOPIC)
        .map(|p| {
            (
                p["partition"].int(),
                (p["leader"].int(), ints(&p["replicas"]), ints(&p["isr"])),
            )
        })
        .collect()
}

fn healthy(status: &Json) -> Result<(), String> {
    let voters = voters(status);
    if voters.len() != 3 {
        return Err(format!("{} voters", voters.len()));
    }
    let leaders = voters
        .values()
        .filter(|(role, ..)| role == "leader")
        .count();
    if leaders != 1 || status["quorum"]["leader_id"].int() < 1 {
        return Err(format!("{leaders} leaders"));
    }
    if voters
        .values()
        .any(|(_, applied, reachable)| !reachable || *applied < 0)
    {
        return Err("a voter is unreachable".into());
    }
    let partitions = partitions(status);
    if partitions.len() != PARTITIONS as usize {
        return Err(format!("{} partitions of {TOPIC}", partitions.len()));
    }
    for (index, (leader, replicas, isr)) in &partitions {
        if *leader < 1 || replicas.len() != 3 || isr.len() != 3 {
            return Err(format!(
                "partition {index}: leader {leader}, replicas {replicas:?}, isr {isr:?}"
            ));
        }
    }
    if status["summary"]["under_replicated"].int() != 0
        || !status["under_replicated"].array().is_empty()
    {
        return Err("under-replicated partitions".into());
    }
    if status["summary"]["offline"].int() != 0 {
        return Err("offline partitions".into());
    }
    Ok(())
}

fn degraded(status: &Json, killed: i64) -> Result<(), String> {
    let voters = voters(status);
    match voters.get(&killed) {
        Some((_, -1, false)) => {}
        other => return Err(format!("killed voter {killed} shows as {other:?}")),
    }
    let leaders = voters
        .values()
        .filter(|(role, ..)| role == "leader")
        .count();
    if leaders != 1 {
        return Err(format!("{leaders} leaders"));
    }
    let under: Vec<&str> = status["under_replicated"]
        .array()
        .iter()
        .map(Json::string)
        .collect();
    for (index, (leader, replicas, isr)) in partitions(status) {
        let name = format!("{TOPIC}-{index}");
        if !replicas.contains(&killed) {
            continue;
        }
        if isr.contains(&killed) || leader == killed || !under.contains(&name.as_str()) {
            return Err(format!(
                "{name}: leader {leader}, replicas {replicas:?}, isr {isr:?}, under-replicated {under:?}"
            ));
        }
    }
    let broker = status["brokers"]
        .array()
        .iter()
        .find(|b| b["id"].int() == killed)
        .ok_or("killed broker not listed")?;
    if broker["status"].string() != "fenced/offline" {
        return Err(format!("killed broker is {}", broker["status"].string()));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_status_reports_quorum_and_under_replicated_partitions() {
    let mut brokers = tokio::task::spawn_blocking(|| BrokerProcess::start_quorum(3))
        .await
        .unwrap();
    create_topic(&brokers[0]).await;
    let bootstrap = brokers[0].bootstrap();

    let started = Instant::now();
    let status = loop {
        let b = bootstrap.clone();
        let status = tokio::task::spawn_blocking(move || status_json(&b))
            .await
            .unwrap();
        match healthy(&status) {
            Ok(()) => break status,
            Err(why) => assert!(
                started.elapsed() < HEALTHY_TIMEOUT,
                "the cluster never looked healthy ({why}):\n{status:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    eprintln!("healthy after {:?}", started.elapsed());
    let commit_index = status["quorum"]["commit_index"].int();
    assert!(commit_index > 0);
    for (id, (_, applied, _)) in voters(&status) {
        assert!(
            applied <= commit_index,
            "voter {id} applied {applied} > {commit_index}"
        );
    }
    assert_eq!(status["summary"]["online_brokers"].int(), 3);

    // The human report says the same.
    let b = bootstrap.clone();
    let (ok, text, stderr) = tokio::task::spawn_blocking(move || cairn_cluster_status(&b, &[]))
        .await
        .unwrap();
    assert!(ok, "{stderr}");
    assert!(
        text.starts_with("Metadata quorum (__cluster_metadata-0): leader "),
        "{text}"
    );
    assert!(
        text.contains("Brokers: 3 online, 0 fenced/offline"),
        "{text}"
    );
    assert!(text.contains("under-replicated: 0, offline: 0"), "{text}");

    // Kill a broker that is neither the controller nor the bootstrap (node 1).
    let controller = status["quorum"]["leader_id"].int();
    let killed = [2, 3].into_iter().find(|id| *id != controller).unwrap();
    brokers[killed as usize - 1].kill9();
    let killed_at = Instant::now();
    let status = loop {
        let b = bootstrap.clone();
        let status = tokio::task::spawn_blocking(move || status_json(&b))
            .await
            .unwrap();
        match degraded(&status, killed) {
            Ok(()) => break status,
            Err(why) => assert!(
                killed_at.elapsed() < DEGRADED_TIMEOUT,
                "after killing broker {killed} the status never showed it ({why}):\n{status:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    eprintln!(
        "broker {killed} shown fenced, its partitions under-replicated after {:?}",
        killed_at.elapsed()
    );
    assert_eq!(
        status["summary"]["under_replicated"].int(),
        status["under_replicated"].array().len() as i64
    );
    assert_eq!(status["summary"]["offline"].int(), 0, "{status:?}");
    let b = bootstrap.clone();
    let (ok, text, stderr) = tokio::task::spawn_blocking(move || cairn_cluster_status(&b, &[]))
        .await
        .unwrap();
    assert!(ok, "{stderr}");
    assert!(text.contains("unreachable"), "{text}");
    assert!(text.contains("1 fenced/offline"), "{text}");
}

/// Just enough JSON to read the report (the workspace's JSON library is not a dependency
/// of this package).
#[derive(Debug, Clone, PartialEq)]
enum Json {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

static NULL: Json = Json::Null;

impl std::ops::Index<&str> for Json {
    type Output = Json;
    fn index(&self, key: &str) -> &Json {
        match self {
            Json::Obj(fields) => fields
                .iter()
                .find(|(k, _)| k == key)
                .map_or(&NULL, |(_, v)| v),
            _ => &NULL,
        }
    }
}

impl Json {
    fn int(&self) -> i64 {
        match self {
            Json::Num(n) => *n as i64,
            other => panic!("not a number: {other:?}"),
        }
    }

    fn string(&self) -> &str {
        match self {
            Json::Str(s) => s,
            other => panic!("not a string: {other:?}"),
        }
    }

    fn boolean(&self) -> bool {
        match self {
            Json::Bool(b) => *b,
            other => panic!("not a bool: {other:?}"),
        }
    }

    fn array(&self) -> &[Json] {
        match self {
            Json::Arr(items) => items,
            other => panic!("not an array: {other:?}"),
        }
    }

    fn parse(text: &str) -> Result<Json, String> {
        let mut p = Parser {
            chars: text.chars().collect(),
            at: 0,
        };
        let value = p.value()?;
        p.ws();
        if p.at != p.chars.len() {
            return Err(format!("trailing text at {}", p.at));
        }
        Ok(value)
    }
}

struct Parser {
    chars: Vec<char>,
    at: usize,
}

impl Parser {
    fn ws(&mut self) {
        while self.chars.get(self.at).is_some_and(|c| c.is_whitespace()) {
            self.at += 1;
        }
    }

    fn eat(&mut self, c: char) -> Result<(), String> {
        self.ws();
        if self.chars.get(self.at) == Some(&c) {
            self.at += 1;
            Ok(())
        } else {
            Err(format!("expected '{c}' at {}", self.at))
        }
    }

    fn literal(&mut self, word: &str, value: Json) -> Result<Json, String> {
        for c in word.chars() {
            self.eat(c)?;
        }
        Ok(value)
    }

    fn value(&mut self) -> Result<Json, String> {
        self.ws();
        match self.chars.get(self.at).copied() {
            Some('n') => self.literal("null", Json::Null),
            Some('t') => self.literal("true", Json::Bool(true)),
            Some('f') => self.literal("false", Json::Bool(false)),
            Some('"') => self.string().map(Json::Str),
            Some('[') => {
                self.at += 1;
                let mut items = Vec::new();
                self.ws();
                if self.chars.get(self.at) == Some(&']') {
                    self.at += 1;
                    return Ok(Json::Arr(items));
                }
                loop {
                    items.push(self.value()?);
                    self.ws();
                    match self.chars.get(self.at) {
                        Some(',') => self.at += 1,
                        Some(']') => {
                            self.at += 1;
                            return Ok(Json::Arr(items));
                        }
                        _ => return Err(format!("bad array at {}", self.at)),
                    }
                }
            }
            Some('{') => {
                self.at += 1;
                let mut fields = Vec::new();
                self.ws();
                if self.chars.get(self.at) == Some(&'}') {
                    self.at += 1;
                    return Ok(Json::Obj(fields));
                }
                loop {
                    self.ws();
                    let key = self.string()?;
                    self.eat(':')?;
                    fields.push((key, self.value()?));
                    self.ws();
                    match self.chars.get(self.at) {
                        Some(',') => self.at += 1,
                        Some('}') => {
                            self.at += 1;
                            return Ok(Json::Obj(fields));
                        }
                        _ => return Err(format!("bad object at {}", self.at)),
                    }
                }
            }
            Some(c) if c == '-' || c.is_ascii_digit() => {
                let start = self.at;
                while self
                    .chars
                    .get(self.at)
                    .is_some_and(|c| matches!(c, '-' | '+' | '.' | 'e' | 'E' | '0'..='9'))
                {
                    self.at += 1;
                }
                let number: String = self.chars[start..self.at].iter().collect();
                number
                    .parse()
                    .map(Json::Num)
                    .map_err(|e| format!("bad number {number}: {e}"))
            }
            other => Err(format!("unexpected {other:?} at {}", self.at)),
        }
    }

    fn string(&mut self) -> Result<String, String> {
        self.eat('"')?;
        let mut out = String::new();
        loop {
            let c = *self.chars.get(self.at).ok_or("unterminated string")?;
            self.at += 1;
            match c {
                '"' => return Ok(out),
                '\\' => {
                    let e = *self.chars.get(self.at).ok_or("unterminated escape")?;
                    self.at += 1;
                    match e {
                        'n' => out.push('\n'),
                        'r' => out.push('\r'),
                        't' => out.push('\t'),
                        'u' => {
                            let hex: String = self
                                .chars
                                .get(self.at..self.at + 4)
                                .ok_or("short \\u")?
                                .iter()
                                .collect();
                            self.at += 4;
                            let code = u32::from_str_radix(&hex, 16).map_err(|e| e.to_string())?;
                            out.push(char::from_u32(code).unwrap_or('\u{fffd}'));
                        }
                        other => out.push(other),
                    }
                }
                c => out.push(c),
            }
        }
    }
}
