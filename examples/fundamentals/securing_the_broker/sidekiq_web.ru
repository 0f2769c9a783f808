# Sidekiq's Web UI behind a login, as a Rack app of its own (`rackup sidekiq_web.ru`, bound to
# 127.0.0.1 behind your TLS proxy). Shown on docs/fundamentals/securing-the-broker.md; run by
# tests/fundamentals/securing_the_broker/test_sidekiq_web.py. The UI can retry, delete and
# kill jobs, so it gets the "operator" ACL user's REDIS_URL, and nobody reaches it unlogged.
require "digest"
require "rack/session/cookie" # Rack 2; with Rack 3 it comes from the rack-session gem
require "sidekiq/web"

def secret(name, min_length)
  value = ENV.fetch(name) { abort "#{name} is not set: refusing to serve the Web UI" }
  abort "#{name} must be at least #{min_length} characters" if value.length < min_length
  value
end

USER = secret("SIDEKIQ_WEB_USER", 1)
PASSWORD = secret("SIDEKIQ_WEB_PASSWORD", 32)
SESSION_SECRET = secret("SIDEKIQ_WEB_SESSION_SECRET", 64)

Sidekiq.configure_client { |config| config.redis = {url: secret("REDIS_URL", 1)} }

# Sidekiq::Web's CSRF check keeps its token in this session; the cookie never travels
# without TLS and is not readable from JavaScript.
use Rack::Session::Cookie, secret: SESSION_SECRET, same_site: :strict, secure: true,
  httponly: true, max_age: 8 * 3600

# Compare digests: equal lengths, and secure_compare takes the same time whatever matches.
use Rack::Auth::Basic, "Sidekiq" do |user, password|
  [[user, USER], [password, PASSWORD]].map { |given, wanted|
    digest = ->(text) { Digest::SHA256.hexdigest(text) }
    Rack::Utils.secure_compare(digest.(given), digest.(wanted))
  }.all?
end

run Sidekiq::Web
