//! HTTP surface of llm-router: the native API (`POST /`, `POST /dry-run`)
//! and the OpenAI-compatible one (`/v1/chat/completions`, `/v1/embeddings`,
//! `/v1/models`).

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use faas_runtime::access::{self, Field};
use faas_runtime::{Body, Handler, RequestContext, error_response, json_response, sse_response};
use futures_util::StreamExt;
use gateway_client::InvokeError;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use routing_core::Task;
use routing_core::api::{
    FeedbackRequest, InvalidRequest, ProxyStreamEvent, RouteExplanation, RouteRequest,
    RouteResponse,
};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::error::RouterError;
use crate::openai;
use crate::openai_error::{self, OpenAiError};
use crate::openai_request::{AUTO_MODEL, ChatCompletionRequest, EmbeddingsRequest};
use crate::router::{Call, Plan, Router};

/// The llm-router's request handler.
pub(crate) struct RouterHandler {
    router: Arc<Router>,
}

/// How a streamed answer is framed.
#[derive(Clone, Copy)]
enum Framing {
    /// The fleet's own events: `route`, `delta`, `done`, `error`.
    Native,
    /// OpenAI `chat.completion.chunk`s and `[DONE]`.
    OpenAi { include_usage: bool },
}

impl RouterHandler {
    /// Wraps a router.
    pub(crate) fn new(router: Router) -> Self {
        Self {
            router: Arc::new(router),
        }
    }

    async fn native(&self, body: &[u8], call: &Call<'_>) -> Result<Response<Body>, RouterError> {
        let request = RouteRequest::parse(body)?;
        let mut plan = self.router.plan(request, call).await?;
        self.router.explore(&mut plan, call);
        if plan.request.stream {
            return self.stream(plan, call, Framing::Native).await;
        }
        let answer = self.router.execute(plan, call).await?;
        log_routed(call, &answer);
        Ok(json_response(StatusCode::OK, &answer))
    }

    async fn dry_run(&self, body: &[u8], call: &Call<'_>) -> Result<Response<Body>, RouterError> {
        let request = RouteRequest::parse(body)?;
        let plan = self.router.plan(request, call).await?;
        Ok(json_response(
            StatusCode::OK,
            &json!({
                "task": plan.task,
                "difficulty": plan.difficulty,
                "route": plan.explanation(),
                "decision": plan.decision,
            }),
        ))
    }

    async fn chat_completions(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        call: &Call<'_>,
    ) -> Result<Response<Body>, OpenAiError> {
        let mut request = ChatCompletionRequest::parse(body)?;
        request.hints.merge_headers(headers)?;
        let include_usage = request.include_usage();
        let valid = request.into_route_request()?.validate()?;
        if valid.task == Some(Task::Embed) {
            return Err(InvalidRequest {
                param: Some("task".to_owned()),
                message: "use /v1/embeddings for embeddings".to_owned(),
            }
            .into());
        }
        let mut plan = self.router.plan(valid, call).await?;
        self.router.explore(&mut plan, call);
        if plan.request.stream {
            return Ok(self
                .stream(plan, call, Framing::OpenAi { include_usage })
                .await?);
        }
        let answer = self.router.execute(plan, call).await?;
        log_routed(call, &answer);
        let model = served_model(&answer.route, &answer.provider, &answer.model);
        let mut body = openai::completion(&answer, unix_now(), route_extension(&answer));
        body["model"] = Value::String(model);
        Ok(json_response(StatusCode::OK, &body))
    }

    async fn embeddings(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        call: &Call<'_>,
    ) -> Result<Response<Body>, OpenAiError> {
        let mut request = EmbeddingsRequest::parse(body)?;
        request.hints.merge_headers(headers)?;
        let base64 = request.base64();
        let valid = request.into_route_request()?.validate()?;
        let mut plan = self.router.plan(valid, call).await?;
        self.router.explore(&mut plan, call);
        let answer = self.router.execute(plan, call).await?;
        Ok(json_response(
            StatusCode::OK,
            &openai::embeddings(&answer, base64, route_extension(&answer)),
        ))
    }

    /// `POST /feedback`: a score or thumbs for a routed call.
    async fn feedback(&self, body: &[u8]) -> Result<Response<Body>, RouterError> {
        let feedback = FeedbackRequest::parse(body)?;
        let learnt = self.router.feedback(feedback).await?;
        tracing::debug!(
            call_id = %learnt.call_id,
            model = %learnt.model,
            reward = learnt.reward,
            learned = learnt.learned,
            "feedback"
        );
        Ok(json_response(StatusCode::OK, &learnt))
    }

    /// `GET /v1/models`: `auto` and the catalogue.
    fn models(&self) -> Response<Body> {
        json_response(
            StatusCode::OK,
            &json!({"object": "list", "data": self.model_objects()}),
        )
    }

    /// `GET /v1/models/{id}` (`models.retrieve`); ids hold a `/`
    /// (`vertex/gemini-2.5-flash`), sent as is or percent-encoded.
    fn model(&self, id: &str) -> Result<Response<Body>, OpenAiError> {
        let id = id.replace("%2F", "/").replace("%2f", "/");
        self.model_objects()
            .into_iter()
            .find(|m| m["id"] == id.as_str())
            .map(|m| json_response(StatusCode::OK, &m))
            .ok_or(OpenAiError::ModelNotFound(id))
    }

    fn model_objects(&self) -> Vec<Value> {
        let policy = self.router.policy();
        std::iter::once(json!({
            "id": AUTO_MODEL, "object": "model", "created": 0, "owned_by": "faas-llm-router",
        }))
        .chain(policy.models().map(|m| {
            json!({
                "id": m.id,
                "object": "model",
                "created": 0,
                "owned_by": m.provider,
                "locality": m.locality,
                "tasks": m.tasks,
                "context_window": m.context_window,
                "price_usd_per_mtok": {"input": m.price.input, "output": m.price.output},
            })
        }))
        .collect()
    }

    /// Starts the stream on the first model that takes it and forwards its
    /// events, framed for the API that asked.
    async fn stream(
        &self,
        plan: Plan,
        call: &Call<'_>,
        framing: Framing,
    ) -> Result<Response<Body>, RouterError> {
        let routed = self.router.execute_stream(&plan, call).await?;
        self.router
            .remember(&plan, call, &routed.explanation, &routed.model.id)
            .await;
        let (tx, rx) = mpsc::channel::<Bytes>(16);
        let router = Arc::clone(&self.router);
        let id = call.id.to_owned();
        tokio::spawn(async move {
            let created = unix_now();
            let model_id = routed.model.id.clone();
            let mut events = routed.events;
            let first = match framing {
                Framing::Native => sse(&json!({"type": "route", "route": routed.explanation})),
                Framing::OpenAi { .. } => sse(&openai::chunk(
                    &id,
                    created,
                    &model_id,
                    json!({"role": "assistant", "content": ""}),
                    None,
                )),
            };
            if tx.send(first).await.is_err() {
                return;
            }
            let mut settled = false;
            while let Some(event) = events.next().await {
                let event = event.unwrap_or_else(|e| ProxyStreamEvent::Error {
                    error: RouterError::from(e).detail(),
                });
                let frames = match (&event, framing) {
                    (_, Framing::Native) => vec![event.to_sse()],
                    (ProxyStreamEvent::Delta { text }, Framing::OpenAi { .. }) => {
                        vec![sse(&openai::chunk(
                            &id,
                            created,
                            &model_id,
                            json!({"content": text}),
                            None,
                        ))]
                    }
                    (
                        ProxyStreamEvent::Done {
                            finish_reason,
                            usage,
                            cost_usd,
                            ..
                        },
                        Framing::OpenAi { include_usage },
                    ) => {
                        let mut frames = vec![sse(&openai::chunk(
                            &id,
                            created,
                            &model_id,
                            json!({}),
                            Some(openai::finish_reason(*finish_reason)),
                        ))];
                        if include_usage {
                            frames.push(sse(&openai::usage_chunk(
                                &id,
                                created,
                                &model_id,
                                usage,
                                json!({"cost_usd": cost_usd, "route": routed.explanation}),
                            )));
                        }
                        frames.push(Bytes::from_static(b"data: [DONE]\n\n"));
                        frames
                    }
                    (ProxyStreamEvent::Error { error }, Framing::OpenAi { .. }) => {
                        vec![sse(&json!({"error": openai_error::stream_error(error)}))]
                    }
                };
                let last = !matches!(event, ProxyStreamEvent::Delta { .. });
                if last {
                    let (ok, cost, failure) = match &event {
                        ProxyStreamEvent::Done { cost_usd, .. } => (true, *cost_usd, None),
                        ProxyStreamEvent::Error { error } => (false, None, Some(error)),
                        ProxyStreamEvent::Delta { .. } => (false, None, None),
                    };
                    router.settle_stream(
                        &plan,
                        &routed.model,
                        routed.started,
                        ok,
                        cost,
                        failure,
                        routed.settled,
                    );
                    settled = true;
                }
                for frame in frames {
                    if tx.send(frame).await.is_err() {
                        return;
                    }
                }
                if last {
                    break;
                }
            }
            if !settled {
                router.settle_stream(
                    &plan,
                    &routed.model,
                    routed.started,
                    false,
                    None,
                    None,
                    routed.settled,
                );
            }
        });
        Ok(sse_response(rx))
    }
}

impl Handler for RouterHandler {
    async fn handle(&self, req: Request<Bytes>, cx: RequestContext) -> Response<Body> {
        let call = Call {
            id: &cx.call_id,
            received_at: cx.received_at.into(),
        };
        let path = req.uri().path();
        let result = match (req.method(), path) {
            (&Method::POST, "/") => self.native(req.body(), &call).await,
            (&Method::POST, "/dry-run") => self.dry_run(req.body(), &call).await,
            (&Method::POST, "/v1/chat/completions") => Ok(self
                .chat_completions(req.headers(), req.body(), &call)
                .await
                .unwrap_or_else(|e| openai_failure(&cx, &e))),
            (&Method::POST, "/v1/embeddings") => Ok(self
                .embeddings(req.headers(), req.body(), &call)
                .await
                .unwrap_or_else(|e| openai_failure(&cx, &e))),
            (&Method::GET, "/v1/models") => Ok(self.models()),
            (&Method::GET, p) if p.starts_with("/v1/models/") => Ok(self
                .model(&p["/v1/models/".len()..])
                .unwrap_or_else(|e| openai_failure(&cx, &e))),
            (&Method::POST, "/feedback" | "/v1/feedback") => self.feedback(req.body()).await,
            (&Method::GET, "/") => Ok(json_response(
                StatusCode::OK,
                &json!({
                    "function": "llm-router",
                    "version": env!("CARGO_PKG_VERSION"),
                    "endpoints": ["POST /", "POST /dry-run", "POST /v1/chat/completions",
                                  "POST /v1/embeddings", "GET /v1/models",
                                  "POST /feedback", "POST /v1/feedback"],
                }),
            )),
            (method, path) if path.starts_with("/v1/") => Ok(openai_failure(
                &cx,
                &OpenAiError::Router(RouterError::NotFound {
                    method: method.to_string(),
                    path: path.to_owned(),
                }),
            )),
            (method, path) => Err(RouterError::NotFound {
                method: method.to_string(),
                path: path.to_owned(),
            }),
        };
        result.unwrap_or_else(|e| {
            access::record(Field::Error, e.metric_label());
            tracing::debug!(call_id = %cx.call_id, status = e.status().as_u16(), error = e.metric_label(), "request failed");
            let mut response = error_response(e.status(), &e.error_object());
            // The provider's wait, passed on.
            if let Some(InvokeError::Failed {
                status: 429 | 503,
                retry_after_secs: Some(secs),
                ..
            }) = e.downstream()
            {
                response
                    .headers_mut()
                    .insert(http::header::RETRY_AFTER, (*secs).into());
            }
            response
        })
    }
}

/// An OpenAI-compatible request's failure, logged and answered in OpenAI's terms.
fn openai_failure(cx: &RequestContext, e: &OpenAiError) -> Response<Body> {
    access::record(Field::Error, e.metric_label());
    tracing::debug!(call_id = %cx.call_id, status = e.status().as_u16(), error = e.metric_label(), "request failed");
    e.response()
}

fn log_routed(call: &Call<'_>, answer: &RouteResponse) {
    access::record(Field::Task, answer.task.as_str());
    access::record(Field::Rule, answer.route.rule.as_str());
    access::record(Field::Provider, answer.provider.as_str());
    access::record(Field::Model, answer.model.as_str());
    access::record(Field::InputTokens, answer.usage.input_tokens);
    access::record(Field::OutputTokens, answer.usage.output_tokens);
    if let Some(cost) = answer.cost_usd {
        access::record(Field::CostUsd, cost);
    }
    tracing::debug!(
        call_id = %call.id,
        task = %answer.task,
        provider = %answer.provider,
        model = %answer.model,
        rule = %answer.route.rule,
        latency_ms = answer.latency_ms,
        "routed"
    );
}

/// The catalogue id of the model that answered: the last successful
/// attempt (an escalation's, if any).
fn served_model(route: &RouteExplanation, provider: &str, model: &str) -> String {
    route
        .attempts
        .iter()
        .rev()
        .find(|a| a.outcome == "ok")
        .map(|a| a.model.clone())
        .unwrap_or_else(|| openai::catalogue_id(provider, model))
}

fn route_extension(answer: &RouteResponse) -> Value {
    json!({
        "provider": answer.provider,
        "model": answer.model,
        "task": answer.task,
        "difficulty": answer.difficulty,
        "cost_usd": answer.cost_usd,
        "latency_ms": answer.latency_ms,
        "route": answer.route,
    })
}

fn sse(value: &Value) -> Bytes {
    Bytes::from(format!("data: {value}\n\n"))
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
