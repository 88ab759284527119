package usersvc_test

import (
	"fmt"
	"sync"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/airlock-dev/airlock/issuer/internal/testenv"
	issuerv1 "github.com/airlock-dev/airlock/pkg/api/airlock/issuer/v1"
)

func TestConcurrentCreatesNeverExceedMaxUsers(t *testing.T) {
	const limit, racers = 6, 16 // testenv seeds five users: one place left
	e := testenv.New(t, testenv.Options{MaxUsers: limit})
	admin := testenv.Ctx(e.Admin)
	got := make([]codes.Code, racers)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range racers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			_, err := e.UsersClient().CreateUser(admin, &issuerv1.CreateUserRequest{User: &issuerv1.User{Username: fmt.Sprintf("racer-%d", i), Role: issuerv1.Role_ROLE_USER}})
			got[i] = status.Code(err)
		}()
	}
	close(start)
	wg.Wait()
	won, refused := 0, 0
	for _, c := range got {
		switch c {
		case codes.OK:
			won++
		case codes.ResourceExhausted:
			refused++
		}
	}
	list, err := e.UsersClient().ListUsers(admin, &issuerv1.ListUsersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(list.GetUsers()); n != limit || won != 1 || refused != racers-1 {
		t.Fatalf("%d racers for the last of %d places: %d won, %d ResourceExhausted; the issuer holds %d users with MaxUsers=%d",
			racers, limit, won, refused, n, limit)
	}
}
