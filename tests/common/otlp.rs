//! A minimal OTLP/HTTP collector for tests: it accepts `POST /v1/traces` with a
//! protobuf `ExportTraceServiceRequest` (what the node's exporter sends), answers
//! 200, and keeps every span with the `service.instance.id` of the process that sent
//! it. Real HTTP on 127.0.0.1, decoded with the OpenTelemetry protocol crate.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use prost::Message as _;

/// One span as the collector received it.
#[derive(Clone, Debug)]
pub struct SeenSpan {
    /// `service.instance.id` of the sender (a node id).
    pub instance: String,
    pub name: String,
    pub trace_id: Vec<u8>,
    pub span_id: Vec<u8>,
    pub parent_span_id: Vec<u8>,
    /// String attributes.
    pub attributes: Vec<(String, String)>,
}

impl SeenSpan {
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

pub struct Collector {
    /// The base URL to configure as `otlp_endpoint`.
    pub url: String,
    spans: Arc<Mutex<Vec<SeenSpan>>>,
    /// Requests that were not a decodable export (must stay 0).
    pub bad: Arc<Mutex<Vec<String>>>,
}

impl Collector {
    pub fn start() -> Collector {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let spans = Arc::new(Mutex::new(Vec::new()));
        let bad = Arc::new(Mutex::new(Vec::new()));
        let (s, b) = (spans.clone(), bad.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { break };
                let (s, b) = (s.clone(), b.clone());
                std::thread::spawn(move || serve(stream, &s, &b));
            }
        });
        Collector { url, spans, bad }
    }

    pub fn spans(&self) -> Vec<SeenSpan> {
        self.spans.lock().unwrap().clone()
    }
}

/// Serves one keep-alive connection.
fn serve(stream: TcpStream, spans: &Mutex<Vec<SeenSpan>>, bad: &Mutex<Vec<String>>) {
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut length = 0usize;
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0u8; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        if !request_line.starts_with("POST /v1/traces ") {
            bad.lock().unwrap().push(request_line.clone());
        } else {
            match ExportTraceServiceRequest::decode(body.as_slice()) {
                Ok(request) => spans.lock().unwrap().extend(flatten(request)),
                Err(e) => bad.lock().unwrap().push(format!("{request_line}: {e}")),
            }
        }
        let reply =
            "HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n";
        if writer.write_all(reply.as_bytes()).is_err() {
            return;
        }
    }
}

fn text(value: &Option<AnyValue>) -> Option<String> {
    match value.as_ref()?.value.as_ref()? {
        any_value::Value::StringValue(s) => Some(s.clone()),
        any_value::Value::IntValue(i) => Some(i.to_string()),
        _ => None,
    }
}

fn strings(attributes: &[KeyValue]) -> Vec<(String, String)> {
    attributes
        .iter()
        .filter_map(|kv| Some((kv.key.clone(), text(&kv.value)?)))
        .collect()
}

fn flatten(request: ExportTraceServiceRequest) -> Vec<SeenSpan> {
    let mut out = Vec::new();
    for rs in request.resource_spans {
        let resource = rs
            .resource
            .map(|r| strings(&r.attributes))
            .unwrap_or_default();
        let instance = resource
            .iter()
            .find(|(k, _)| k == "service.instance.id")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        for ss in rs.scope_spans {
            for span in ss.spans {
                out.push(SeenSpan {
                    instance: instance.clone(),
                    name: span.name,
                    trace_id: span.trace_id,
                    span_id: span.span_id,
                    parent_span_id: span.parent_span_id,
                    attributes: strings(&span.attributes),
                });
            }
        }
    }
    out
}
