<?php
/*
 * Boots MikoPBX Core's own PHP for tests/mikopbx_lifecycle.rs: its class
 * loader (MikoPBX\ from the release's src/, Modules\ from the modules
 * directory), its DI services (stand-ins only where standins.php says), and
 * its configuration (every directory inside the test's tree).
 *
 * The harness's settings come from the JSON file named by $MIKOPBX_HARNESS
 * (written by the Rust test); the variable is inherited by featpkg and by the
 * reload command featpkg runs, whose Globals.php (on PHP's include_path, as
 * on MikoPBX) boots this same harness.
 */

namespace FeatpkgHarness;

use Phalcon\Config\Config;
use Phalcon\Di\Di;

error_reporting(E_ALL & ~E_DEPRECATED);

/** @return array<string, mixed> the harness's settings */
function settings(): array
{
    static $settings = null;
    if ($settings === null) {
        $file = getenv('MIKOPBX_HARNESS');
        if ($file === false || !is_file($file)) {
            fwrite(STDERR, "harness: MIKOPBX_HARNESS must name the harness's settings file\n");
            exit(2);
        }
        $settings = json_decode((string) file_get_contents($file), true, 512, JSON_THROW_ON_ERROR);
    }
    return $settings;
}

/**
 * Classes the harness provides instead of the release's: the generators that
 * cannot run here (generators.php says why each text is faithful).
 */
const GENERATOR_STANDINS = [
    'MikoPBX\Core\Asterisk\Configs\ExtensionsConf',
    'MikoPBX\Core\Asterisk\Configs\ManagerConf',
    'MikoPBX\Core\Asterisk\Configs\SIPConf',
    'MikoPBX\Core\System\Configs\CronConf',
];

function boot(): void
{
    static $booted = false;
    if ($booted) {
        return;
    }
    $booted = true;
    $s = settings();
    require_once __DIR__ . '/standins.php';
    spl_autoload_register(static function (string $class) use ($s): void {
        if (in_array($class, GENERATOR_STANDINS, true)) {
            require_once __DIR__ . '/generators.php';
            return;
        }
        foreach (['MikoPBX\\' => $s['src'], 'Modules\\' => $s['modules_dir']] as $prefix => $dir) {
            if (strncmp($class, $prefix, strlen($prefix)) === 0) {
                $file = $dir . '/' . str_replace('\\', '/', substr($class, strlen($prefix))) . '.php';
                if (is_file($file)) {
                    require_once $file;
                }
                return;
            }
        }
    });
    require_once $s['src'] . '/Common/Config/functions.php';

    $di = new Di();
    Di::setDefault($di);
    $di->setShared('config', new Config(config($s)));
    $di->setShared('db', new Database($s['db']));
    $di->setShared('managedCache', new ManagedCache());
    $di->setShared('redis', new \Redis());
    $di->setShared('mutex', new Mutex());
    $di->setShared('eventBus', new EventBus($s['var'] . '/event-bus.log'));
    $di->setShared('logger', new Logger($s['var'] . '/syslog.log'));
    $di->setShared('translation', new Translation());
    $di->setShared('license', new License());
    $di->setShared('modelsMetadata', new ModelsMetadata());
    $di->setShared('sentryErrorHandler', null);
    $di->setShared('whoopsErrorHandler', null);
    // MikoPBX's own providers: its internal config classes and the enabled
    // modules' Conf classes, as its hookModulesMethod() sees them.
    (new \MikoPBX\Core\Providers\AsteriskConfModulesProvider())->register($di);
    (new \MikoPBX\Common\Providers\PBXConfModulesProvider())->register($di);
}

/** MikoPBX's settings (its /etc/inc/mikopbx-settings.json), every directory in the test's tree. */
function config(array $s): array
{
    $var = $s['var'];
    return [
        'core' => [
            'cfDir' => $s['root'] . '/cf',
            'varEtcDir' => $var . '/etc',
            'modulesDir' => $s['modules_dir'],
            'tempDir' => $var . '/tmp',
            'confBackupDir' => $var . '/backup',
            'logsDir' => $var . '/log',
            'mediaMountPoint' => $var,
            'debugMode' => false,
        ],
        'asterisk' => [
            'astetcdir' => $s['ast_etc'],
            'astmoddir' => $s['ast_mod'],
            'astagidir' => $s['ast_agi'],
            'astvarlibdir' => $s['ast_varlib'],
            'astspooldir' => $s['ast_spool'],
            'astlogdir' => $s['ast_log'],
            'astdbdir' => $s['ast_varlib'],
            'mediadir' => $var . '/media',
            'mohdir' => $var . '/media/moh',
            'customSoundDir' => $var . '/media/custom',
            'astsoundsdir' => $var . '/media/sounds',
        ],
        'database' => ['dbfile' => $s['db']],
        'adminApplication' => [
            'assetsCacheDir' => $var . '/www_cache',
            'voltCacheDir' => $var . '/www_cache/volt',
            'viewCacheDir' => $var . '/www_cache/view',
        ],
        'www' => [
            'uploadDir' => $var . '/upload',
            'downloadCacheDir' => $var . '/download',
        ],
    ];
}

/** Runs the scratch Asterisk's CLI command; returns its output. */
function asterisk(string $command): string
{
    $cli = settings()['asterisk_cli'];
    $out = [];
    exec($cli . ' -rx ' . escapeshellarg($command) . ' 2>&1', $out, $code);
    if ($code !== 0) {
        throw new \RuntimeException("asterisk -rx '$command' failed ($code): " . implode("\n", $out));
    }
    return implode("\n", $out);
}
