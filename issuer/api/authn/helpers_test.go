package authn_test

import (
	"time"

	"github.com/airlock-dev/airlock/issuer/internal/testenv"
	"github.com/airlock-dev/airlock/issuer/pat"
	"github.com/airlock-dev/airlock/issuer/store"
)

func storePAT(id, secret string, userID uint64, exp time.Time) store.PAT {
	return store.PAT{ID: id, Hash: pat.Hash(secret), UserID: userID, Username: "user", CreateTime: testenv.Start.Add(-time.Hour), ExpireTime: exp}
}
