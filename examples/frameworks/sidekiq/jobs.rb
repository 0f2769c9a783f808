# Sidekiq jobs for docs/frameworks/sidekiq.md.
# Written for Sidekiq 6.4 (Debian's ruby-sidekiq) and unchanged on 7 and 8:
# `Sidekiq::Job` exists since 6.3 (older code says `Sidekiq::Worker`, the same module).
# [start:imports]
require "sidekiq"
require "sidekiq/api"
# [end:imports]

# [start:reject-malformed]
module Handbook
  # Server middleware: a job whose arguments its class refuses goes straight to the dead
  # set with the reason, instead of being retried 25 times over three weeks.
  class RejectMalformedArgs
    def call(job_instance, job, _queue)
      problem = job_instance.class.respond_to?(:check_args) &&
                job_instance.class.check_args(job["args"])
      return yield unless problem

      Sidekiq.logger.warn("rejecting #{job["class"]} #{job["jid"]}: #{problem}")
      now = Sidekiq::VERSION.to_i >= 8 ? (Time.now.to_f * 1000).floor : Time.now.to_f
      dead = job.merge("error_class" => "ArgumentError", "error_message" => problem,
                       "failed_at" => now)
      Sidekiq::DeadSet.new.kill(Sidekiq.dump_json(dead), notify_failure: false)
    end
  end
end

Sidekiq.configure_server do |config|
  config.server_middleware { |chain| chain.add Handbook::RejectMalformedArgs }
end
# [end:reject-malformed]

# [start:jobs]
class RecordSignupJob
  include Sidekiq::Job
  sidekiq_options queue: "default", retry: 5

  PLANS = %w[free pro].freeze

  # nil when the arguments are usable, else why not (used by the middleware above)
  def self.check_args(args)
    unless args.is_a?(Array) && args.length == 2
      return "expected [user_id, plan], got #{args.inspect}"
    end
    user_id, plan = args
    return "user_id must be an integer, got #{user_id.inspect}" unless user_id.is_a?(Integer)
    unless PLANS.include?(plan)
      return "plan must be one of #{PLANS.join(", ")}, got #{plan.inspect}"
    end
    nil
  end

  def perform(user_id, plan)
    Sidekiq.redis { |conn| conn.hset("handbook:signups", user_id.to_s, plan) }
  end
end

class SlowReportJob
  include Sidekiq::Job
  sidekiq_options queue: "low", retry: 3

  def perform(report_id, seconds)
    Sidekiq.redis { |conn| conn.sadd("handbook:reports:started", report_id) }
    sleep(seconds)
    Sidekiq.redis { |conn| conn.sadd("handbook:reports:done", report_id) }
  end
end
# [end:jobs]
