//! The two kinds of simulated user of `loadtest/campaign_locust.py`, request
//! for request, with the same request names and think times.
//!
//! - Shopper (9 of every 10 users), the homework's scenario as this project
//!   models it (`loadtest/shopping.py`): 1-20 cycles of "search for one word;
//!   while more than 10 products match, add a word from the name of a random
//!   product of the answer and search again", 0.5-1.5 s between searches; then
//!   the next shopper's cycles.
//! - Account holder (1 of 10): registers and logs in once, then reads (3) and
//!   updates (1) its profile, searches (4) and opens a product it saw (2),
//!   1-3 s between actions.
//!
//! And, as the named variant `original`, the original solution's shopper
//! (its `loadtest-product/src/app/locust-tasks/tasks.py`, Locust 1.0.3, in
//! which `min_wait=1000`/`max_wait=6000` are honoured): every user takes 1-20
//! random words; for each, it searches for the word, then, if that answered
//! products, searches once more for the word and a random word of a random
//! product's name, 1-6 s before every step; then new words. See
//! [`User::original`] for what differs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::{Method, RequestBuilder, header};
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::MAX_WORDS;
use crate::stats::Recorder;

/// Which users the generator runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// `loadtest/campaign_locust.py`'s: shoppers and account holders, 9:1.
    Campaign,
    /// The original solution's shopper alone (1-6 s waits, one refinement per word).
    Original,
}

/// What every user talks to.
pub struct Target {
    /// Base URL with the path prefix, no trailing slash.
    pub base: String,
    pub host_header: Option<String>,
    /// The words a search starts from.
    pub words: Vec<String>,
    pub think: bool,
    pub timeout: Duration,
    pub scenario: Scenario,
}

#[derive(Deserialize)]
struct Page {
    total: u64,
    items: Vec<Item>,
}

#[derive(Deserialize)]
struct Item {
    id: i64,
    name: String,
}

#[derive(Deserialize)]
struct Login {
    token: String,
}

pub struct User {
    id: usize,
    target: Arc<Target>,
    recorder: Arc<Recorder>,
    /// This user's own connection (kept alive), as a Locust `FastHttpUser` has.
    client: reqwest::Client,
    rng: fastrand::Rng,
}

impl User {
    pub fn new(id: usize, target: Arc<Target>, recorder: Arc<Recorder>) -> Result<User, String> {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(1)
            .tcp_nodelay(true)
            .timeout(target.timeout)
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        Ok(User {
            id,
            target,
            recorder,
            client,
            rng: fastrand::Rng::new(),
        })
    }

    /// Runs this user's scenario until `stop` is cancelled (a request in
    /// flight is then dropped, as Locust stops a user).
    pub async fn run(mut self, stop: CancellationToken) {
        let account_holder = self.id % 10 == 9;
        tokio::select! {
            () = stop.cancelled() => {}
            () = async {
                if self.target.scenario == Scenario::Original {
                    loop {
                        self.original().await;
                    }
                } else if account_holder {
                    self.account_holder().await;
                } else {
                    loop {
                        self.shop().await;
                        self.pause(0.5, 1.5).await;
                    }
                }
            } => {}
        }
    }

    async fn pause(&mut self, min: f64, max: f64) {
        if self.target.think {
            let seconds = min + (max - min) * self.rng.f64();
            tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
        }
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let request = self
            .client
            .request(method, format!("{}{path}", self.target.base));
        match &self.target.host_header {
            Some(host) => request.header(header::HOST, host),
            None => request,
        }
    }

    /// Sends `request`, records it under `name` (failed unless answered
    /// `expect` with a body `parse` accepts) and returns what `parse` made.
    async fn exchange<T>(
        &self,
        request: RequestBuilder,
        name: &'static str,
        expect: u16,
        parse: impl FnOnce(&[u8]) -> Option<T>,
    ) -> Option<T> {
        let sent = Instant::now();
        let answer = match request.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                match response.bytes().await {
                    Ok(body) if status == expect => Ok(body),
                    Ok(_) => Err(format!("status {status}")),
                    Err(e) => Err(reason(&e)),
                }
            }
            Err(e) => Err(reason(&e)),
        };
        let took = sent.elapsed();
        let (value, failure) = match answer {
            Ok(body) => match parse(&body) {
                Some(value) => (Some(value), None),
                None => (None, Some("not the expected JSON".to_owned())),
            },
            Err(why) => (None, Some(why)),
        };
        self.recorder.record(name, took, failure);
        value
    }

    fn random_word(&mut self) -> String {
        let words = &self.target.words;
        words[self.rng.usize(..words.len())].clone()
    }

    async fn search(&self, words: &[String], name: &'static str) -> Option<Page> {
        let request = self
            .request(Method::GET, "/products")
            .query(&[("q", words.join(" "))]);
        self.exchange(request, name, 200, |b| serde_json::from_slice(b).ok())
            .await
    }

    /// One shopper: 1-20 search cycles.
    async fn shop(&mut self) {
        let cycles = self.rng.usize(1..=20);
        for cycle in 0..cycles {
            if cycle > 0 {
                self.pause(0.5, 1.5).await;
            }
            let mut words = vec![self.random_word()];
            let mut page = self.search(&words, "/products?q=[search]").await;
            while let Some(answer) = page.take() {
                if answer.total <= 10 || answer.items.is_empty() || words.len() >= MAX_WORDS {
                    break;
                }
                self.pause(0.5, 1.5).await;
                let item = &answer.items[self.rng.usize(..answer.items.len())];
                let name_words: Vec<&str> = item.name.split_whitespace().collect();
                if name_words.is_empty() {
                    break;
                }
                words.push(name_words[self.rng.usize(..name_words.len())].to_owned());
                page = self.search(&words, "/products?q=[refine]").await;
            }
        }
    }

    /// One round of the original solution's shopper: 1-20 random words, for
    /// each a search and, if it answered products, one refinement with a word
    /// of a random product's name; 1-6 s before every step (Locust 1.0.3
    /// waits between tasks, also after the round's last).
    ///
    /// What differs, because this service differs: the original searched
    /// `name LIKE '%w1 w2%'` (a phrase, in that order, as a substring) and
    /// returned every match; this service matches the words in any order and
    /// form and answers a page of 20, from which the product is drawn. The
    /// original drew its words from Faker's Russian vocabulary, as its data;
    /// here they come from the catalog's names (`--searches`), as the data.
    async fn original(&mut self) {
        let count = self.rng.usize(1..=20);
        let words: Vec<String> = (0..count).map(|_| self.random_word()).collect();
        let mut previous: Vec<Item> = Vec::new();
        for word in &words {
            self.pause(1.0, 6.0).await;
            // As the original: an answer replaces the products remembered,
            // a failed search keeps the last ones.
            if let Some(page) = self
                .search(std::slice::from_ref(word), "/products?q=[search]")
                .await
            {
                previous = page.items;
            }
            self.pause(1.0, 6.0).await;
            if !previous.is_empty() {
                let item = &previous[self.rng.usize(..previous.len())];
                let name_words: Vec<&str> = item.name.split_whitespace().collect();
                if !name_words.is_empty() {
                    let extra = name_words[self.rng.usize(..name_words.len())].to_owned();
                    self.search(&[word.clone(), extra], "/products?q=[specific]")
                        .await;
                }
            }
        }
        // The round's end is a task of its own in the original (it ends the
        // task set), followed by a wait like any other.
        self.pause(1.0, 6.0).await;
    }

    async fn account_holder(&mut self) {
        let tag: String = std::iter::repeat_with(|| self.rng.digit(16))
            .take(12)
            .collect();
        let secret: String = std::iter::repeat_with(|| self.rng.digit(16))
            .take(32)
            .collect();
        let username = format!("campaign_{tag}");
        let password = format!("pw-{secret}");
        let body = json!({
            "username": username, "firstName": "Нагрузка", "lastName": "Тест",
            "email": format!("{tag}@campaign.example.com"), "phone": "+7 900 000-00-00",
            "password": password,
        });
        let register = self.request(Method::POST, "/register").json(&body);
        let mut token = None;
        if self
            .exchange(register, "/register", 201, |_| Some(()))
            .await
            .is_some()
        {
            token = self.login(&username, &password).await;
        }
        let mut seen: Vec<i64> = Vec::new();
        loop {
            // Weights 3 (profile), 1 (update), 4 (search), 2 (open a product).
            let pick = self.rng.u8(0..10);
            match (&token, pick) {
                (None, 0..4) => token = self.login(&username, &password).await,
                (Some(t), 0..3) => {
                    let request = self.request(Method::GET, "/me").bearer_auth(t);
                    self.exchange(request, "/me", 200, json_value).await;
                }
                (Some(t), 3) => {
                    let first = ["Ада", "Алан", "Грейс"][self.rng.usize(..3)];
                    let request = self
                        .request(Method::PUT, "/me")
                        .bearer_auth(t)
                        .json(&json!({ "firstName": first }));
                    self.exchange(request, "/me", 200, json_value).await;
                }
                (_, 4..8) => {
                    let word = self.random_word();
                    if let Some(page) = self
                        .search(std::slice::from_ref(&word), "/products?q=[search]")
                        .await
                        && !page.items.is_empty()
                    {
                        seen = page.items.iter().map(|p| p.id).collect();
                    }
                }
                _ => {
                    if !seen.is_empty() {
                        let id = seen[self.rng.usize(..seen.len())];
                        let request = self.request(Method::GET, &format!("/products/{id}"));
                        self.exchange(request, "/products/{id}", 200, json_value)
                            .await;
                    }
                }
            }
            self.pause(1.0, 3.0).await;
        }
    }

    async fn login(&self, username: &str, password: &str) -> Option<String> {
        let request = self
            .request(Method::POST, "/login")
            .json(&json!({ "username": username, "password": password }));
        self.exchange(request, "/login", 200, |b| {
            serde_json::from_slice::<Login>(b).ok().map(|l| l.token)
        })
        .await
    }
}

/// Accepts any well-formed JSON body.
fn json_value(body: &[u8]) -> Option<()> {
    serde_json::from_slice::<IgnoredAny>(body).ok().map(|_| ())
}

/// A short reason for a request that got no answer.
fn reason(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timeout".to_owned()
    } else if e.is_connect() {
        "connection failed".to_owned()
    } else if e.is_body() || e.is_decode() {
        "answer cut off".to_owned()
    } else {
        format!(
            "transport: {}",
            std::error::Error::source(e).map_or_else(|| e.to_string(), ToString::to_string)
        )
    }
}
