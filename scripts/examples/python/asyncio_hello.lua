-- Answers: asyncio, the "Hello World!" at the top of the asyncio
-- documentation: prints "Hello ...", sleeps one second, prints
-- "... World!".
--
-- No event loop to start and no async/await: the script's main chunk is
-- already a task, and parx.sleep parks it (the thread stays free for other
-- tasks).  The sleep is shortened so the example runs quickly.
print("Hello ...")
parx.sleep(0.1)
print("... World!")
