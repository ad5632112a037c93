//! Helpers shared by the emulator tests.
#![expect(
    clippy::unwrap_used,
    reason = "test code fails loudly at the first surprise"
)]

use std::net::SocketAddr;

use provider_emulator::{Emulator, EmulatorConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Starts an emulator on a free loopback port.
pub(crate) async fn start(config: EmulatorConfig) -> Emulator {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    Emulator::start(listener, config).await.unwrap()
}

/// A plain HTTP client.
pub(crate) fn client() -> reqwest::Client {
    http_client::client().unwrap()
}

/// Sends raw bytes and reads until the server closes: `Err` carries how
/// the connection ended (e.g. `ConnectionReset`).
pub(crate) async fn raw_exchange(addr: SocketAddr, request: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.write_all(request).await?;
    let mut out = Vec::new();
    stream.read_to_end(&mut out).await?;
    Ok(out)
}

/// A raw HTTP/1.1 POST with a JSON body and extra header lines.
pub(crate) fn raw_post(path: &str, extra_headers: &str, body: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n{extra_headers}content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Reads a whole streamed body, chunk by chunk; `Err` if it was cut.
pub(crate) async fn read_all(mut resp: reqwest::Response) -> Result<Vec<u8>, reqwest::Error> {
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// Parses SSE text into (event name, data) pairs; comment lines are
/// returned as ("comment", text). Accepts `\n` and `\r\n`.
pub(crate) fn parse_sse(text: &str) -> Vec<(String, String)> {
    let normalised = text.replace("\r\n", "\n");
    let mut events = Vec::new();
    for block in normalised.split("\n\n").filter(|b| !b.is_empty()) {
        let mut name = String::from("message");
        let mut data = Vec::new();
        for line in block.lines() {
            if let Some(comment) = line.strip_prefix(':') {
                events.push(("comment".to_owned(), comment.trim().to_owned()));
            } else if let Some(v) = line.strip_prefix("event:") {
                name = v.trim().to_owned();
            } else if let Some(v) = line.strip_prefix("data:") {
                data.push(v.trim_start().to_owned());
            }
        }
        if !data.is_empty() {
            events.push((name, data.join("\n")));
        }
    }
    events
}

/// Starts an instant emulator with generated credentials; returns the
/// emulator and the secrets a client would be given.
pub(crate) async fn start_with_secrets(
    flavor: provider_emulator::ProviderFlavor,
) -> (Emulator, provider_emulator::ClientSecrets) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let root = format!("http://{}", listener.local_addr().unwrap());
    let (creds, secrets) = provider_emulator::Credentials::generate(flavor, &root, 7).unwrap();
    let config = EmulatorConfig::instant(flavor).with_credentials(creds);
    (Emulator::start(listener, config).await.unwrap(), secrets)
}
