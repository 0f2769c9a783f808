# Enqueueing from Ruby, for docs/frameworks/sidekiq.md (Sidekiq 6.4; the same calls on 7 and 8).
#   ruby enqueue.rb signup USER_ID PLAN     -> RecordSignupJob.perform_async
#   ruby enqueue.rb for-python TASK JSON    -> a job for a Python consumer, in Sidekiq's format
require_relative "jobs"
require "json"

case ARGV[0]
when "signup"
  # [start:perform-async]
  puts RecordSignupJob.perform_async(Integer(ARGV[1]), ARGV[2]) # prints the jid
  # [end:perform-async]
when "for-python"
  # [start:push-for-python]
  # The class need not exist in Ruby: the payload names a task a Python service runs.
  puts Sidekiq::Client.push(
    "queue" => "python", "class" => ARGV[1], "args" => [JSON.parse(ARGV[2])]
  )
  # [end:push-for-python]
else
  abort "usage: ruby enqueue.rb signup USER_ID PLAN | for-python TASK JSON"
end
