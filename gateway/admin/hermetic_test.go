package admin_test

import (
	"testing"

	"github.com/portfwd/portfwd/internal/testenv"
)

// TestMain keeps the tests, and the programs they start, out of the
// user's home directory and temporary directory (testenv.Main).
func TestMain(m *testing.M) { testenv.Main(m) }
