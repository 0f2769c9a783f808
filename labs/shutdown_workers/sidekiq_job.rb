# The shutdown lab's job for a real `sidekiq` process (Debian's ruby-sidekiq 6.4):
#   sidekiq -r /abs/path/labs/shutdown_workers/sidekiq_job.rb -q lab -c 2 -t SECONDS
# It records its start and end in Redis and works args[1] seconds times LAB_TIME_SCALE.
require "sidekiq"

class LabJob
  include Sidekiq::Job

  def perform(id, seconds)
    Sidekiq.redis { |conn| conn.hincrby("lab:starts", id, 1) }
    sleep(seconds * Float(ENV.fetch("LAB_TIME_SCALE", "1")))
    Sidekiq.redis { |conn| conn.hincrby("lab:finishes", id, 1) }
  end
end

# Takes its process down on every attempt, as the kernel's OOM killer would.
class PoisonJob
  include Sidekiq::Job

  def perform(id)
    Sidekiq.redis { |conn| conn.hincrby("lab:starts", id, 1) }
    Process.kill("KILL", Process.pid)
  end
end
