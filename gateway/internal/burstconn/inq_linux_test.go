package burstconn

import (
	"syscall"
	"unsafe"
)

// inq is the number of bytes queued for reading on the socket fd (FIONREAD).
func inq(fd uintptr) int {
	var n int32
	_, _, errno := syscall.Syscall(syscall.SYS_IOCTL, fd, syscall.TIOCINQ, uintptr(unsafe.Pointer(&n)))
	if errno != 0 {
		return -1
	}
	return int(n)
}
