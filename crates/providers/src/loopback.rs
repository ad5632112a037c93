//! A minimal HTTP/1.1 server on 127.0.0.1 for tests of the thin senders:
//! each connection gets one canned answer chosen by a handler that sees the
//! received request.

#[cfg(all(
    feature = "ollama",
    feature = "openai",
    feature = "google",
    feature = "anthropic",
    feature = "bedrock"
))]
pub(crate) use server::{Received, Reply, serve};

/// The server, which only the tests of every provider family together use.
#[cfg(all(
    feature = "ollama",
    feature = "openai",
    feature = "google",
    feature = "anthropic",
    feature = "bedrock"
))]
mod server {
    use std::sync::{Arc, Mutex};

    use http::HeaderMap;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::TcpListener;

    /// A request as the server received it.
    #[derive(Debug, Clone)]
    pub(crate) struct Received {
        /// e.g. `POST`.
        pub method: String,
        /// Path and query as sent.
        pub target: String,
        /// Headers (names lower-cased).
        pub headers: HeaderMap,
        /// The body.
        pub body: Vec<u8>,
    }

    /// What to answer.
    #[derive(Debug, Clone)]
    pub(crate) enum Reply {
        /// Status, content type and body, sent at once.
        Full(u16, &'static str, Vec<u8>),
        /// Never answer (the connection stays open).
        Silent,
    }

    /// A running server; requests are recorded in order.
    pub(crate) struct Server {
        /// `http://127.0.0.1:port`.
        pub url: String,
        /// Everything received so far.
        pub received: Arc<Mutex<Vec<Received>>>,
    }

    /// Starts a server answering with `handler`.
    pub(crate) async fn serve(
        handler: impl Fn(&Received) -> Reply + Send + Sync + 'static,
    ) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&received);
        let handler = Arc::new(handler);
        tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                let log = Arc::clone(&log);
                let handler = Arc::clone(&handler);
                tokio::spawn(async move {
                    let Some(request) = read_request(&mut socket).await else {
                        return;
                    };
                    let reply = handler(&request);
                    log.lock().unwrap().push(request);
                    match reply {
                        Reply::Full(status, content_type, body) => {
                            let head = format!(
                                "HTTP/1.1 {status} X\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                                body.len()
                            );
                            let _ = socket.write_all(head.as_bytes()).await;
                            let _ = socket.write_all(&body).await;
                            let _ = socket.shutdown().await;
                        }
                        Reply::Silent => {
                            let mut sink = [0u8; 64];
                            while matches!(socket.read(&mut sink).await, Ok(n) if n > 0) {}
                        }
                    }
                });
            }
        });
        Server { url, received }
    }

    async fn read_request(socket: &mut tokio::net::TcpStream) -> Option<Received> {
        let mut buffer = Vec::new();
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            if let Some(pos) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break pos;
            }
            let n = socket.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buffer.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8(buffer[..head_end].to_vec()).ok()?;
        let mut lines = head.split("\r\n");
        let mut first = lines.next()?.split(' ');
        let method = first.next()?.to_owned();
        let target = first.next()?.to_owned();
        let mut headers = HeaderMap::new();
        for line in lines {
            let (name, value) = line.split_once(':')?;
            headers.append(
                http::HeaderName::from_bytes(name.trim().as_bytes()).ok()?,
                http::HeaderValue::from_str(value.trim()).ok()?,
            );
        }
        let length: usize = headers
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = buffer[head_end + 4..].to_vec();
        while body.len() < length {
            let n = socket.read(&mut chunk).await.ok()?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
        Some(Received {
            method,
            target,
            headers,
            body,
        })
    }
}

/// A secrets folder for one test, removed on drop.
pub(crate) struct TempSecrets(std::path::PathBuf);

impl TempSecrets {
    /// Writes `files` (name, content) into a fresh folder.
    pub(crate) fn new(tag: &str, files: &[(&str, &str)]) -> Self {
        let dir =
            std::env::temp_dir().join(format!("provider-secrets-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for (name, value) in files {
            std::fs::write(dir.join(name), value).unwrap();
        }
        Self(dir)
    }

    /// A store reading the folder.
    pub(crate) fn store(&self) -> secrets::SecretStore {
        secrets::SecretStore::new(&self.0)
    }
}

impl Drop for TempSecrets {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
