//! One attempt: account → rate limit → token → send. Nothing is recorded
//! here; the attempt's result goes to [`super::record`].

use super::*;
use crate::queue::StoredBody;

/// The account a job went out through, and its mailbox.
#[derive(Debug, Clone)]
pub(super) struct Via {
    pub id: i64,
    pub mailbox: String,
}

/// One attempt, before it is recorded.
pub(super) enum Attempt {
    Sent {
        /// The upstream's `250`, as it came.
        reply: String,
        refused: Vec<Refusal>,
        via: Via,
        lease: Option<Box<pool::Lease>>,
        /// The message as stored, kept for a notice about refused
        /// recipients (sending drops the stored body); `None` without any.
        original: Option<Bytes>,
    },
    Temporary {
        reply: Reason,
        code: Option<ReplyCode>,
    },
    Permanent {
        reply: Reason,
        code: Option<ReplyCode>,
        failed: Vec<Refusal>,
        account: Option<Via>,
    },
    Waiting {
        reason: Reason,
    },
    RateLimited {
        wait_secs: i64,
        reply: Reason,
    },
}

fn provider_name(p: Provider) -> &'static str {
    match p {
        Provider::Microsoft => "Microsoft",
        Provider::Google => "Google",
    }
}

fn waiting_reason(a: &Account, detail: Reason) -> Reason {
    replies::waiting(provider_name(a.provider), &a.name, detail)
}

/// Why a token failure keeps the account from sending: the token reason
/// itself where the error carries one.
fn token_detail(e: &TokensError) -> Reason {
    match e {
        TokensError::ReauthorizationRequired(r) => r.clone(),
        other => Reason::text(other),
    }
}

/// `detail`, after the upstream's refusal of the token when there was one.
fn after(context: Option<&str>, detail: Reason) -> Reason {
    match context {
        Some(reply) => replies::then(replies::upstream(reply), detail),
        None => detail,
    }
}

impl Delivery {
    /// The account a job goes out through, or why it must wait.
    pub(super) async fn choose_account(&self, job: &Job) -> Result<Account, Attempt> {
        let store = &self.inner.store;
        let temporary = |e: crate::store::StoreError| Attempt::Temporary {
            reply: replies::store(e),
            code: None,
        };
        if let Some(id) = job.account_id {
            match store.account(id).await {
                Ok(a) => return Ok(a),
                Err(crate::store::StoreError::NotFound) => {}
                Err(e) => return Err(temporary(e)),
            }
        }
        let accounts = store.accounts().await.map_err(temporary)?;
        if let Some(a) = accounts.iter().find(|a| a.is_default) {
            return Ok(a.clone());
        }
        let active: Vec<&Account> = accounts
            .iter()
            .filter(|a| a.enabled && a.token_status == TokenStatus::Active)
            .collect();
        match active.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(Attempt::Waiting {
                reason: replies::no_account(),
            }),
            _ => Err(Attempt::Waiting {
                reason: replies::no_default(),
            }),
        }
    }

    /// Maps a token failure: waits for an administrator, or retries later.
    /// `context`: the upstream's refusal of the previous token, if any.
    pub(super) async fn token_failure(
        &self,
        a: &Account,
        e: &TokensError,
        context: Option<&str>,
    ) -> Attempt {
        if e.is_temporary() {
            return Attempt::Temporary {
                reply: after(context, replies::token_unavailable(e)),
                code: None,
            };
        }
        match e {
            TokensError::ReauthorizationRequired(_)
            | TokensError::NotAuthorized
            | TokensError::NotConfigured(_) => Attempt::Waiting {
                reason: waiting_reason(a, after(context, token_detail(e))),
            },
            _ => {
                let now_active = self
                    .inner
                    .store
                    .account(a.id)
                    .await
                    .map(|x| x.token_status == TokenStatus::Active)
                    .unwrap_or(true);
                if now_active {
                    Attempt::Temporary {
                        reply: after(context, replies::token_unavailable(e)),
                        code: None,
                    }
                } else {
                    Attempt::Waiting {
                        reason: waiting_reason(a, after(context, token_detail(e))),
                    }
                }
            }
        }
    }

    pub(super) fn target(&self, a: &Account) -> Result<smtp::Target, Reason> {
        let config = &self.inner.config;
        let (default_host, default_port) = a.provider.default_smtp();
        let host = if a.smtp_host.trim().is_empty() {
            default_host.to_owned()
        } else {
            a.smtp_host.trim().to_owned()
        };
        let port = if a.smtp_port == 0 {
            default_port
        } else {
            a.smtp_port
        };
        // The token service's trust for the account: the Google account
        // trusts only the CAs an Administrator added.
        let policy = self.inner.tokens.tls_policy(a);
        let (tls_id, tls) =
            crate::tls::client_config_with_id(&policy).map_err(replies::tls_setup)?;
        Ok(smtp::Target {
            full_detail: smtp::provider_host(a.provider, a.cloud, &host),
            host,
            port,
            security: a.smtp_security,
            tls,
            tls_id,
            connect_timeout: Duration::from_secs(config.connect_timeout_secs.max(1)),
            command_timeout: Duration::from_secs(config.command_timeout_secs.max(1)),
            hello: self.inner.hello.clone(),
        })
    }

    pub(super) async fn attempt(&self, job: &Job, body: Option<Bytes>) -> Attempt {
        let inner = &self.inner;
        let a = match self.choose_account(job).await {
            Ok(a) => a,
            Err(wait) => return wait,
        };
        if !a.enabled {
            return Attempt::Waiting {
                reason: waiting_reason(&a, replies::switched_off()),
            };
        }
        let status = a.token_status;
        if status != TokenStatus::Active {
            let detail = match status {
                TokenStatus::NotRegistered => replies::not_registered(),
                TokenStatus::Authorizing => replies::authorizing(),
                _ => replies::token_error(a.token_reason.as_ref()),
            };
            return Attempt::Waiting {
                reason: waiting_reason(&a, detail),
            };
        }
        match inner
            .limits
            .take_send(
                a.id,
                a.rate_per_minute,
                inner.config.rate_per_minute,
                inner.clock.monotonic(),
            )
            .await
        {
            Ok(()) => {}
            Err(limits::Refused::Wait(wait)) => {
                let secs = i64::try_from(wait.as_secs()).unwrap_or(60).max(1);
                let rate = a
                    .rate_per_minute
                    .map_or(inner.config.rate_per_minute, u64::from);
                return Attempt::RateLimited {
                    wait_secs: secs,
                    reply: replies::rate_limited(rate, secs),
                };
            }
            Err(limits::Refused::Store(e)) => {
                return Attempt::Temporary {
                    reply: replies::store(e),
                    code: None,
                };
            }
        }
        let mut token: AccessToken = match inner.tokens.access_token(a.id).await {
            Ok(t) => t,
            Err(e) => return self.token_failure(&a, &e, None).await,
        };
        let smtp_transport = a.transport == crate::store::accounts::Transport::Smtp;
        let read = match body {
            Some(b) => Ok(Message::Whole(b)),
            // Over SMTP a message in pieces is read piece by piece as it
            // is written; the HTTP transports need it whole.
            None if smtp_transport => self.read_for_smtp(job).await,
            None => inner
                .store
                .job_body(&job.id)
                .await
                .map(|b| Message::Whole(Bytes::from(b))),
        };
        let message = match read {
            Ok(b) => b,
            Err(crate::store::StoreError::NotFound) => {
                return Attempt::Permanent {
                    reply: replies::body_missing(),
                    code: None,
                    failed: Vec::new(),
                    account: Some(Via {
                        id: a.id,
                        mailbox: token.mailbox.clone(),
                    }),
                };
            }
            Err(e) => {
                return Attempt::Temporary {
                    reply: replies::store(e),
                    code: None,
                };
            }
        };
        let (body, pieces) = match message {
            Message::Whole(b) => (b, None),
            Message::Pieces { head, count } => (head, Some(count)),
        };
        if !smtp_transport {
            let (from, rewrite) = self.envelope_from(&a, job, &token);
            return self
                .attempt_http(job, &a, token, body, &from, rewrite)
                .await;
        }
        let target = match self.target(&a) {
            Ok(t) => t,
            Err(reason) => {
                return Attempt::Temporary {
                    reply: reason,
                    code: None,
                };
            }
        };
        let mut refreshed = false;
        let mut fresh_only = false;
        // A From in the account's send-as list is kept, and is the envelope
        // sender too (the mailbox has Send As rights for it).
        let kept_from = job
            .header_from
            .as_deref()
            .map(str::trim)
            .filter(|f| crate::store::accounts::send_as_match(&a.send_as, f).is_some())
            .map(str::to_owned);
        loop {
            let envelope_from = kept_from.clone().unwrap_or_else(|| {
                a.sender
                    .as_deref()
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .unwrap_or(&token.mailbox)
                    .to_owned()
            });
            // From follows the envelope: the Sender address when one is set
            // (the mailbox has Send As rights for it), else the mailbox.
            let data = rewrite_from(
                &body,
                &envelope_from,
                inner.config.rewrite_from && kept_from.is_none(),
            );
            let key = inner.pool.key(
                a.id,
                a.max_connections,
                &target,
                &token.mailbox,
                &token.token,
            );
            let got = if fresh_only {
                inner.pool.get_slot(&key, CONNECTION_WAIT).await
            } else {
                inner.pool.get(&key, CONNECTION_WAIT).await
            };
            let mut lease = match got {
                Some(pool::Got::Idle(lease)) => *lease,
                Some(pool::Got::Slot(local)) => {
                    // On PostgreSQL, one of the account's connections in the
                    // whole cluster too, held as long as the session lives.
                    let cap = u32::try_from(key.cap()).unwrap_or(u32::MAX);
                    let permit = match inner
                        .limits
                        .connection_or_returned(a.id, cap, CONNECTION_WAIT, async {
                            // A fresh session is wanted: no idle one will do.
                            if fresh_only {
                                std::future::pending().await
                            } else {
                                inner.pool.given_back().await
                            }
                        })
                        .await
                    {
                        Ok(limits::Connection::Slot(cluster)) => {
                            limits::Permit::new(local, cluster)
                        }
                        // A session of this instance came back: take it
                        // (the local slot goes back meanwhile).
                        Ok(limits::Connection::Returned) => continue,
                        Err(limits::Refused::Wait(_)) => {
                            return Attempt::RateLimited {
                                wait_secs: 5,
                                reply: replies::busy(cap),
                            };
                        }
                        Err(limits::Refused::Store(e)) => {
                            return Attempt::Temporary {
                                reply: replies::store(e),
                                code: None,
                            };
                        }
                    };
                    let mut session = match smtp::connect(&target).await {
                        Ok(s) => s,
                        Err(e) => return smtp_failure(&e),
                    };
                    if let Err(e) = session.auth_xoauth2(&token.mailbox, &token.token).await {
                        session.quit().await;
                        drop(permit);
                        match self
                            .auth_refused(&a, job, &e, &token.token, &mut refreshed)
                            .await
                        {
                            Ok(t) => {
                                token = t;
                                continue;
                            }
                            Err(attempt) => return attempt,
                        }
                    }
                    inner.pool.lease(key, session, permit)
                }
                None => {
                    return Attempt::RateLimited {
                        wait_secs: 5,
                        reply: replies::busy(
                            a.max_connections
                                .map_or(inner.config.connections_per_account, u64::from),
                        ),
                    };
                }
            };
            let outgoing = match pieces {
                None => smtp::Outgoing::Whole(&data),
                Some(count) => smtp::Outgoing::Pieces {
                    head: &data,
                    rest: self.rest_of(&job.id, count),
                    size: usize::try_from(job.size).unwrap_or(usize::MAX),
                },
            };
            return match lease
                .session
                .send_message(&envelope_from, &job.rcpt_to, outgoing)
                .await
            {
                Ok(report) => Attempt::Sent {
                    // A message in pieces is read again, whole, for a notice.
                    original: (!report.refused.is_empty() && pieces.is_none())
                        .then(|| body.clone()),
                    reply: report.reply,
                    refused: report.refused,
                    via: Via {
                        id: a.id,
                        mailbox: token.mailbox.clone(),
                    },
                    lease: Some(Box::new(lease)),
                },
                Err(SendError::Smtp(e)) if lease.reused && closed_while_idle(&e) => {
                    // The server closed the idle session; nothing was sent.
                    tracing::debug!(job_id = %job.id, account = a.id, "reused upstream session was closed; opening a new one");
                    lease.close().await;
                    fresh_only = true;
                    continue;
                }
                Err(SendError::AllRefused(refused)) => {
                    // The session stays usable (RSET was sent).
                    inner.pool.put(lease);
                    let reply = Refusal::describe(&refused);
                    Attempt::Permanent {
                        reply: replies::all_refused(&reply),
                        code: refused
                            .first()
                            .and_then(|r| outcome::reply_code(&r.reply))
                            .and_then(ReplyCode::new),
                        failed: refused,
                        account: Some(Via {
                            id: a.id,
                            mailbox: token.mailbox.clone(),
                        }),
                    }
                }
                Err(SendError::Smtp(e)) => {
                    lease.close().await;
                    if e.reply().to_ascii_uppercase().contains("SENDASDENIED") {
                        inner.tokens.app_smtp_refused(a.id, &e.reply()).await;
                    }
                    match smtp_failure(&e) {
                        Attempt::Permanent { reply, code, .. } => Attempt::Permanent {
                            failed: job
                                .rcpt_to
                                .iter()
                                .map(|r| Refusal {
                                    recipient: r.clone(),
                                    reply: reply.to_string(),
                                })
                                .collect(),
                            reply,
                            code,
                            account: Some(Via {
                                id: a.id,
                                mailbox: token.mailbox.clone(),
                            }),
                        },
                        other => other,
                    }
                }
            };
        }
    }

    /// The message for the SMTP transport: whole when stored whole (or its
    /// header does not end within its first piece), else its first piece
    /// (where From is rewritten) and the number of pieces.
    async fn read_for_smtp(&self, job: &Job) -> Result<Message, crate::store::StoreError> {
        let store = &self.inner.store;
        match store.body_layout(&job.id).await? {
            StoredBody::Whole(b) => Ok(Message::Whole(Bytes::from(b))),
            StoredBody::Pieces(count) => {
                let head = store.body_piece(&job.id, 0).await?;
                if crate::delivery::rewrite::header_block_end(&head) >= head.len() {
                    return store
                        .job_body(&job.id)
                        .await
                        .map(|b| Message::Whole(Bytes::from(b)));
                }
                Ok(Message::Pieces {
                    head: Bytes::from(head),
                    count,
                })
            }
        }
    }

    /// Pieces 1.. of a message in `count` pieces, each read from the store
    /// as the upstream connection is ready for it.
    fn rest_of(&self, id: &str, count: u32) -> smtp::Feed {
        let store = self.inner.store.clone();
        let id = id.to_owned();
        Box::pin(futures_util::stream::unfold(1_u32, move |seq| {
            let (store, id) = (store.clone(), id.clone());
            async move {
                if seq >= count {
                    return None;
                }
                let piece = store.body_piece(&id, seq).await.map_err(|e| {
                    std::io::Error::other(format!("reading the message from the queue: {e}"))
                });
                Some((piece, seq + 1))
            }
        }))
    }

    /// The envelope sender and whether From is rewritten to it: a From in
    /// the account's send-as list is kept; else the Sender setting or the
    /// mailbox.
    pub(super) fn envelope_from(
        &self,
        a: &Account,
        job: &Job,
        token: &AccessToken,
    ) -> (String, bool) {
        let kept = job
            .header_from
            .as_deref()
            .map(str::trim)
            .filter(|f| crate::store::accounts::send_as_match(&a.send_as, f).is_some())
            .map(str::to_owned);
        let rewrite = self.inner.config.rewrite_from && kept.is_none();
        let from = kept.unwrap_or_else(|| {
            a.sender
                .as_deref()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .unwrap_or(&token.mailbox)
                .to_owned()
        });
        (from, rewrite)
    }

    /// AUTH was refused: a token the provider rejects is refreshed once
    /// (the new token returned, to try again); anything else ends the attempt.
    pub(super) async fn auth_refused(
        &self,
        a: &Account,
        job: &Job,
        e: &SmtpError,
        refused: &str,
        refreshed: &mut bool,
    ) -> Result<AccessToken, Attempt> {
        let inner = &self.inner;
        let class = match e {
            SmtpError::Reply { stage, code, text } => classify(*stage, *code, text),
            _ => Class::Temporary,
        };
        match class {
            Class::TokenRejected if !*refreshed => {
                *refreshed = true;
                tracing::info!(
                    job_id = %job.id,
                    account = a.id,
                    code = e.code(),
                    "upstream refused the access token; refreshing once"
                );
                let context = e.reply();
                if let Err(te) = inner.tokens.refresh_refused(a.id, refused).await {
                    return Err(self.token_failure(a, &te, Some(&context)).await);
                }
                match inner.tokens.access_token(a.id).await {
                    Ok(t) => Ok(t),
                    Err(te) => Err(self.token_failure(a, &te, Some(&context)).await),
                }
            }
            Class::TokenRejected => {
                // An app-only token that is fresh and still refused means a
                // missing grant in Exchange: Token Status says which.
                inner.tokens.app_smtp_refused(a.id, &e.reply()).await;
                Err(Attempt::Temporary {
                    reply: replies::fresh_token_refused(&e.reply()),
                    code: e.code().and_then(ReplyCode::new),
                })
            }
            Class::AuthDisabled => {
                inner.tokens.app_smtp_refused(a.id, &e.reply()).await;
                Err(Attempt::Temporary {
                    reply: with_advice(e.reason()),
                    code: e.code().and_then(ReplyCode::new),
                })
            }
            _ => Err(Attempt::Temporary {
                reply: with_advice(e.reason()),
                code: e.code().and_then(ReplyCode::new),
            }),
        }
    }
}
/// Whether a failure on a reused session means the server had closed it
/// while idle: lost at MAIL, before anything of the message was sent.
fn closed_while_idle(e: &SmtpError) -> bool {
    match e {
        SmtpError::Transport { stage, .. } => *stage == outcome::Stage::Mail,
        SmtpError::Reply { stage, code, .. } => *stage == outcome::Stage::Mail && *code == 421,
        SmtpError::BadAddress { .. } => false,
    }
}

/// Judges an SMTP failure outside AUTH.
fn smtp_failure(e: &SmtpError) -> Attempt {
    match e {
        SmtpError::Reply { stage, code, text } => match classify(*stage, *code, text) {
            Class::Permanent => Attempt::Permanent {
                reply: e.reason(),
                code: ReplyCode::new(*code),
                failed: Vec::new(),
                account: None,
            },
            _ => Attempt::Temporary {
                reply: with_advice(e.reason()),
                code: ReplyCode::new(*code),
            },
        },
        SmtpError::BadAddress { .. } | SmtpError::Transport { .. } => Attempt::Temporary {
            reply: e.reason(),
            code: None,
        },
    }
}

/// A message as read for an attempt.
enum Message {
    Whole(Bytes),
    /// Stored in `count` pieces: the first one here, the rest read as sent.
    Pieces {
        head: Bytes,
        count: u32,
    },
}
