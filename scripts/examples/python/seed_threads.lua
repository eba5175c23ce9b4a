-- Answers: the seed "Python 多进程、多线程、异步编程与GPU加速", section 2
-- (多线程): three threads print a start line, sleep 2, 3 and 1 seconds, print
-- an end line naming their delay, and the main thread prints 所有线程已完成
-- once all are joined.
--
-- Threads that wait are parx.async tasks (one VM: they park on the timer,
-- not the thread).  The delays are scaled down 20x so the example runs
-- quickly; the lines name the original seconds.  The end lines come in
-- the order of the delays: 线程3, 线程1, 线程2.
local SCALE = 0.05

local function print_thread_info(thread_name, delay)
  print(("线程 %s 开始"):format(thread_name))
  parx.sleep(delay * SCALE)
  print(("线程 %s 结束,延迟 %d 秒"):format(thread_name, delay))
end

local thread1 = parx.async(print_thread_info, "线程1", 2)
local thread2 = parx.async(print_thread_info, "线程2", 3)
local thread3 = parx.async(print_thread_info, "线程3", 1)

thread1:join()
thread2:join()
thread3:join()
print("所有线程已完成")
