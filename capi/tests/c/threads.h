/* Threads for the C tests: pthreads, or Windows threads. */
#ifndef WXTHUNK_TEST_THREADS_H
#define WXTHUNK_TEST_THREADS_H

#ifdef _WIN32
#include <windows.h>
typedef HANDLE wx_thread;
#define WX_THREAD_RESULT DWORD WINAPI
static wx_thread wx_thread_start(LPTHREAD_START_ROUTINE f, void *arg) {
    return CreateThread(NULL, 0, f, arg, 0, NULL);
}
static void wx_thread_join(wx_thread t) {
    WaitForSingleObject(t, INFINITE);
    CloseHandle(t);
}
#else
#include <pthread.h>
typedef pthread_t wx_thread;
#define WX_THREAD_RESULT void *
static wx_thread wx_thread_start(void *(*f)(void *), void *arg) {
    pthread_t t;
    if (pthread_create(&t, NULL, f, arg) != 0) abort();
    return t;
}
static void wx_thread_join(wx_thread t) { pthread_join(t, NULL); }
#endif

#endif
