package session

// canFakeNoOpenat2 says whether tests can make openTree fall back to
// *os.Root.
const canFakeNoOpenat2 = true
