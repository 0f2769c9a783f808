# The Sidekiq job of labs/openloop_frameworks.py (an instrument, not a pattern), run as
# `sidekiq -r ./labs/openloop_sidekiq.rb -q openloop` with REDIS_URL. Pushes onto the
# openloop:events list: "r -1 T" at startup, "s SEQ T" when a job starts, "a SEQ T" from a
# server middleware once the job returned (basic fetch has no ack: the job left Redis when
# it was fetched). T is CLOCK_MONOTONIC in seconds, like Python's time.monotonic().
require "sidekiq"

module OpenLoop
  EVENTS = "openloop:events"

  def self.mark(kind, seq)
    now = Process.clock_gettime(Process::CLOCK_MONOTONIC)
    Sidekiq.redis { |conn| conn.rpush(EVENTS, "#{kind} #{seq} #{now}") }
  end

  class Done
    def call(_worker, job, _queue)
      yield
      OpenLoop.mark("a", job["args"][0])
    end
  end

  class Job
    include Sidekiq::Worker
    sidekiq_options queue: "openloop", retry: false

    def perform(seq)
      OpenLoop.mark("s", seq)
    end
  end
end

Sidekiq.configure_server do |config|
  config.server_middleware { |chain| chain.add OpenLoop::Done }
  config.on(:startup) { OpenLoop.mark("r", -1) }
end
