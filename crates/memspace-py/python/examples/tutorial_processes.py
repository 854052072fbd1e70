from multiprocessing import Process

import memspace
from memspace import Lock

def func(nums, i, lock: Lock):
    lock.acquire()                          # 打印控制台是共享资源，需要请求锁
    print(f"Process -{i} : ", id(nums))
    lock.release()                          # 释放锁
    for i in range(3):
        lock.acquire()                      # 我们认为nums也是共享资源，需要请求锁
        nums.append(i)
        print(f"Process -{i} : ", nums)
        lock.release()                      # 释放锁

if __name__ == '__main__':
    lock = Lock()
    nums = memspace.SharedList()
    print("Main Process :", id(nums))
    for i in range(3):
        p = Process(target=func, args=(nums, i, lock, ))
        p.start()
        p.join()
    print("Main Process :", nums)
