//! The `otus.auth.v1.AuthService` implementation.

use std::time::Duration;

use chrono::Utc;
use otus_db::Db;
use otus_grpc::client::Channel;
use otus_identity::{Identity, IdentityKey};
use otus_proto::{
    auth::v1::{
        AuthenticateRequest, AuthenticateResponse, DeleteAccountRequest, LoginRequest,
        LoginResponse, LogoutRequest, RegisterRequest, auth_service_server::AuthService,
    },
    users::v1::{
        CreateUserRequest, DeleteUserRequest, LookupUsernameRequest, User,
        users_service_client::UsersServiceClient,
    },
};
use sea_orm::{ActiveModelTrait as _, ActiveValue::Set, EntityTrait as _};
use tonic::{Code, Request, Response, Status};

use crate::{
    entity::credential,
    error::AuthError,
    keys, password,
    store::{LoginLimiter, LoginLimits, SessionStore},
};

/// Settings of the auth service.
#[derive(Clone, Debug)]
pub struct AuthSettings {
    /// How long a session lives.
    pub session_ttl: Duration,
    /// Login attempt limits.
    pub limits: LoginLimits,
    /// Deadline of calls to the users service.
    pub users_deadline: Duration,
    /// Most password hashes computed at once (each needs
    /// [`password::WORK_MEMORY_BYTES`]).
    pub hash_max_concurrent: usize,
    /// How long a request waits for a free hashing slot before 503.
    pub hash_max_wait: Duration,
}

impl AuthSettings {
    /// The defaults: the one place they are written (the command line's
    /// defaults are these, and the README's table is generated from it).
    pub const DEFAULT: Self = Self {
        session_ttl: Duration::from_secs(24 * 3600),
        limits: LoginLimits::DEFAULT,
        users_deadline: otus_grpc::DEFAULT_DEADLINE,
        hash_max_concurrent: 2,
        hash_max_wait: Duration::from_secs(1),
    };
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Serves registration, login, logout and authentication.
#[derive(Clone)]
pub struct AuthApi {
    db: Db,
    sessions: SessionStore,
    limiter: LoginLimiter,
    users: UsersServiceClient<Channel>,
    key: IdentityKey,
    settings: AuthSettings,
    /// Bounded password hashing (memory and concurrency).
    hasher: password::Hasher,
    /// A real argon2id hash of a random password: verifying against it when
    /// the username is unknown makes that answer cost what a wrong password
    /// costs, so timing does not reveal which usernames exist.
    dummy_hash: String,
}

impl AuthApi {
    /// The service. `users` is a channel to the users service.
    pub fn new(
        db: Db,
        sessions: SessionStore,
        limiter: LoginLimiter,
        users: Channel,
        key: IdentityKey,
        settings: AuthSettings,
    ) -> Result<Self, AuthError> {
        let dummy_hash = password::hash(&password::unknown_password())
            .map_err(|e| AuthError::Internal(format!("hashing the dummy password: {e}")))?;
        let hasher = password::Hasher::new(settings.hash_max_concurrent, settings.hash_max_wait);
        Ok(Self {
            db,
            sessions,
            limiter,
            users: UsersServiceClient::new(users),
            key,
            settings,
            hasher,
            dummy_hash,
        })
    }

    /// A request to the users service as the auth service itself.
    fn as_service<T>(&self, msg: T) -> Request<T> {
        let mut req = Request::new(msg);
        req.set_timeout(self.settings.users_deadline);
        otus_identity::attach(&mut req, &self.key.mint(&Identity::auth_service()));
        req
    }

    async fn hash_bounded(&self, password: String) -> Result<String, AuthError> {
        Ok(self.hasher.hash(password).await?)
    }

    async fn verify_bounded(&self, password: String, phc: String) -> Result<bool, AuthError> {
        Ok(self.hasher.verify(password, phc).await?)
    }

    async fn session_user(&self, token: &str) -> Result<i64, AuthError> {
        if token.is_empty() || token.len() > 256 {
            return Err(AuthError::InvalidSession);
        }
        self.sessions
            .get(&password::token_hash(token))
            .await?
            .ok_or(AuthError::InvalidSession)
    }

    /// Deletes the profile again after a failed registration. A failure here
    /// is logged loudly: it is the one case that leaves an orphan profile.
    async fn compensate_registration(&self, user_id: i64) {
        match self
            .users
            .clone()
            .delete_user(self.as_service(DeleteUserRequest { id: user_id }))
            .await
        {
            Ok(_) => tracing::warn!(
                user.id = user_id,
                "registration rolled back: profile deleted"
            ),
            Err(s) if s.code() == Code::NotFound => {}
            Err(s) => tracing::error!(
                user.id = user_id,
                grpc.code = ?s.code(),
                "registration rollback failed: orphan profile left behind"
            ),
        }
    }

    async fn verify_and_start_session(
        &self,
        req: LoginRequest,
    ) -> Result<LoginResponse, AuthError> {
        if req.password.contains('\0') {
            // No stored password can contain it (registration refuses it).
            return Err(AuthError::InvalidPassword(
                "password must not contain NUL characters".into(),
            ));
        }
        let limits = &self.settings.limits;
        let addr_key = keys::login_address(&req.client_address);
        let (attempts, reset) = self.limiter.increment(&addr_key, limits.window).await?;
        if attempts > limits.max_attempts_per_address {
            return Err(AuthError::TooManyAttempts {
                retry_after: Duration::from_secs(reset),
            });
        }
        // Counted per account, whatever spelling of the name is tried.
        let user_key = keys::login_username(&req.username);
        let (failures, reset) = self.limiter.peek(&user_key).await?;
        if failures >= limits.max_failures_per_username {
            return Err(AuthError::TooManyAttempts {
                retry_after: Duration::from_secs(reset),
            });
        }

        let user_id = if req.username.is_empty() || req.username.len() > 1024 {
            None
        } else {
            match self
                .users
                .clone()
                .lookup_username(self.as_service(LookupUsernameRequest {
                    username: req.username.clone(),
                }))
                .await
            {
                Ok(r) => Some(r.into_inner().id),
                Err(s) if s.code() == Code::NotFound => None,
                Err(s) => return Err(AuthError::Users(s)),
            }
        };
        let stored = match user_id {
            Some(id) => credential::Entity::find_by_id(id)
                .one(&self.db)
                .await
                .map_err(AuthError::Db)?,
            None => None,
        };
        let (phc, known) = match &stored {
            Some(c) => (c.password_hash.clone(), true),
            None => (self.dummy_hash.clone(), false),
        };
        let matches = self.verify_bounded(req.password, phc).await?;
        let (Some(user_id), true, true) = (user_id, known, matches) else {
            self.limiter.increment(&user_key, limits.window).await?;
            return Err(AuthError::InvalidCredentials);
        };
        self.limiter.reset(&user_key).await?;

        let token = password::new_session_token();
        self.sessions
            .create(
                &password::token_hash(&token),
                user_id,
                self.settings.session_ttl,
            )
            .await?;
        tracing::info!(user.id = user_id, "login");
        Ok(LoginResponse {
            session_token: token,
            user_id,
            expires_in: i64::try_from(self.settings.session_ttl.as_secs()).unwrap_or(i64::MAX),
        })
    }
}

#[tonic::async_trait]
impl AuthService for AuthApi {
    #[tracing::instrument(skip_all)]
    async fn register(&self, request: Request<RegisterRequest>) -> Result<Response<User>, Status> {
        let RegisterRequest { user, password } = request.into_inner();
        if let Some(why) = password::check_policy(&password) {
            return Err(AuthError::InvalidPassword(why).into());
        }
        // The cheap checks first (fields, username free), so a bad or
        // duplicate registration never costs a hash.
        self.users
            .clone()
            .create_user(self.as_service(CreateUserRequest {
                user: user.clone(),
                validate_only: true,
            }))
            .await?;
        // Hash before creating anything: the slow step cannot fail halfway.
        let phc = self.hash_bounded(password).await?;
        let created = self
            .users
            .clone()
            .create_user(self.as_service(CreateUserRequest {
                user,
                validate_only: false,
            }))
            .await?
            .into_inner();
        let now = Utc::now().fixed_offset();
        let stored = credential::ActiveModel {
            user_id: Set(created.id),
            password_hash: Set(phc),
            created_at: Set(now),
            updated_at: Set(now),
        }
        .insert(&self.db)
        .await;
        if let Err(e) = stored {
            self.compensate_registration(created.id).await;
            return Err(AuthError::Db(e).into());
        }
        tracing::info!(user.id = created.id, "registered");
        Ok(Response::new(created))
    }

    #[tracing::instrument(skip_all)]
    async fn login(
        &self,
        request: Request<LoginRequest>,
    ) -> Result<Response<LoginResponse>, Status> {
        Ok(Response::new(
            self.verify_and_start_session(request.into_inner()).await?,
        ))
    }

    #[tracing::instrument(skip_all)]
    async fn logout(&self, request: Request<LogoutRequest>) -> Result<Response<()>, Status> {
        let token = request.into_inner().session_token;
        if !token.is_empty() {
            self.sessions
                .delete(&password::token_hash(&token))
                .await
                .map_err(AuthError::from)?;
        }
        Ok(Response::new(()))
    }

    #[tracing::instrument(skip_all)]
    async fn authenticate(
        &self,
        request: Request<AuthenticateRequest>,
    ) -> Result<Response<AuthenticateResponse>, Status> {
        let user_id = self
            .session_user(&request.into_inner().session_token)
            .await?;
        Ok(Response::new(AuthenticateResponse {
            user_id,
            identity_token: self.key.mint(&Identity::User(user_id)),
        }))
    }

    #[tracing::instrument(skip_all, fields(user.id = request.get_ref().user_id))]
    async fn delete_account(
        &self,
        request: Request<DeleteAccountRequest>,
    ) -> Result<Response<()>, Status> {
        let DeleteAccountRequest {
            session_token,
            user_id,
        } = request.into_inner();
        let caller = self.session_user(&session_token).await?;
        if caller != user_id {
            return Err(AuthError::NotOwner.into());
        }
        // The profile first: if this fails nothing else has changed and the
        // client can retry. NOT_FOUND means an earlier attempt got this far.
        match self
            .users
            .clone()
            .delete_user(self.as_service(DeleteUserRequest { id: user_id }))
            .await
        {
            Ok(_) => {}
            Err(s) if s.code() == Code::NotFound => {}
            Err(s) => return Err(AuthError::Users(s).into()),
        }
        credential::Entity::delete_by_id(user_id)
            .exec(&self.db)
            .await
            .map_err(AuthError::Db)?;
        self.sessions
            .delete_all(user_id)
            .await
            .map_err(AuthError::from)?;
        tracing::info!("account deleted; sessions revoked");
        Ok(Response::new(()))
    }
}
