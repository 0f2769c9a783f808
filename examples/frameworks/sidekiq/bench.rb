# The Sidekiq contender of the throughput benchmark (page: docs/frameworks/throughput.md).
# labs/throughput.py enqueues with `ruby -r ./bench.rb -e 'BenchJob.enqueue(N, BATCH)'`
# (push_bulk, BATCH jobs per call; prints the seconds it took as JSON), then starts
# `sidekiq -r ./bench.rb -q bench` at the default concurrency and reads the drain time
# from its per-job "start" and "done" log lines.
require "json"
require "sidekiq"

class BenchJob
  include Sidekiq::Job
  sidekiq_options queue: "bench", retry: false

  def perform(_i); end

  def self.enqueue(n, batch)
    started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
    (0...n).each_slice(batch) do |slice|
      Sidekiq::Client.push_bulk("class" => self, "args" => slice.map { |i| [i] })
    end
    seconds = Process.clock_gettime(Process::CLOCK_MONOTONIC) - started
    puts JSON.generate("enqueue_seconds" => seconds)
  end
end
