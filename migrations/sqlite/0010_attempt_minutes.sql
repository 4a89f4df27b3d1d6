-- Attempts per minute are counted by the statement that records the
-- attempt, which knows its sink; the trigger looked the job up for it on
-- every attempt (part 12: forward drain 14% slower with it).
DROP TRIGGER attempts_per_minute;
